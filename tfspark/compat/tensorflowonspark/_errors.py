"""The one error of the TensorFlowOnSpark compatibility layer."""
from __future__ import annotations

from tfspark.errors import NotKeptError  # noqa: F401 - its name here too
