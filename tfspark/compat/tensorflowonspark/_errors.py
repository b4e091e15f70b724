"""The one error of the TensorFlowOnSpark compatibility layer."""
from __future__ import annotations

from tfspark.errors import TFSparkError


class NotKeptError(TFSparkError):
    """A TensorFlowOnSpark feature tfspark deliberately does not keep; the message says what
    to use instead."""

    def __init__(self, feature: str, instead: str):
        super().__init__(f"TensorFlowOnSpark's {feature} is not kept in tfspark: {instead}")
