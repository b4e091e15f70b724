"""NodeError's message: where, why, the node's last lines, and advice for known TF crashes."""
from __future__ import annotations

from tfspark.errors import NodeError

ONEDNN_ABORT = [
    "F0000 00:00:1795693394.571762    7634 tensor.cc:896] Check failed: dtype() == "
    "expected_dtype (1 vs. 3)  int32 expected, got float",
    "*** Check failure stack trace: ***",
    "    @     0x7fb7f5212db4  tensorflow::Tensor::tensor<>()",
    "    @     0x7fb7dd02aaee  tensorflow::MklMaxPoolingGradOp<>::Compute()",
]


def test_the_onednn_empty_batch_abort_is_named_with_what_to_do():
    error = NodeError("worker", 0, "127.0.0.1", "its process was killed by signal 6 SIGABRT",
                      output_tail=ONEDNN_ABORT, restartable=True)
    text = str(error)
    assert text.startswith("TF node worker:0 on 127.0.0.1 failed: its process was killed")
    assert "tensorflow/tensorflow#126128" in text and "TF_ENABLE_ONEDNN_OPTS" in text
    assert text.index("last output lines") < text.index("a known TensorFlow bug")


def test_other_failures_get_no_advice():
    lines = ["Traceback (most recent call last):", "ValueError: Check failed: dtype() == "
             "expected_dtype in my own code"]
    text = str(NodeError("chief", 0, "h", "ValueError: boom", output_tail=lines))
    assert "known TensorFlow bug" not in text and "ValueError: boom" in text
