"""The driver's progress display and history, fed the events the chief's callback sends."""
from __future__ import annotations

import io

from tfspark._driver.progress import TrainingProgress
from tfspark.tf_chatter import is_tf_chatter


def _step(epoch, step, secs, rows=None):
    return {"event": "step", "epoch": epoch, "epochs": 2, "step": step, "steps": 10,
            "logs": {"loss": 1.0 / step}, "rows": rows, "secs": secs}


def test_plain_lines_when_not_a_terminal_and_history_per_epoch():
    out = io.StringIO()
    progress = TrainingProgress(out=out, line_secs=0.0)
    progress.on_event({"event": "train_begin", "epochs": 2})
    progress.on_event(_step(1, 5, 2.0, rows=50))
    progress.on_event({"event": "epoch_end", "epoch": 1, "epochs": 2,
                       "logs": {"loss": 0.5, "accuracy": 0.75}, "rows": 100, "secs": 4.0})
    progress.on_event({"event": "epoch_end", "epoch": 2, "epochs": 2,
                       "logs": {"loss": 0.25}, "rows": None, "secs": 2.0})
    lines = out.getvalue().splitlines()
    assert lines[0] == "tfspark: epoch 1/2 step 5/10: loss 0.2000 - 25 rows/s - ETA 00:00:06"
    assert lines[1] == "tfspark: epoch 1/2: loss 0.5000 - accuracy 0.7500 - 25 rows/s - 4.0 s"
    assert lines[2] == "tfspark: epoch 2/2: loss 0.2500 - 2.0 s"
    assert progress.history == [
        {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "rows": 100, "rows_per_sec": 25.0,
         "secs": 4.0},
        {"epoch": 2, "loss": 0.25, "secs": 2.0}]


def test_an_epoch_run_again_after_a_restart_keeps_its_latest_values():
    progress = TrainingProgress(enabled=False, out=io.StringIO())
    for loss in (0.9, 0.4):
        progress.on_event({"event": "epoch_end", "epoch": 3, "logs": {"loss": loss}, "secs": 1})
    assert [h["loss"] for h in progress.history] == [0.4]


def test_disabled_progress_prints_nothing_but_keeps_history():
    out = io.StringIO()
    progress = TrainingProgress(enabled=False, out=out)
    progress.on_event(_step(1, 1, 1.0))
    progress.on_event({"event": "epoch_end", "epoch": 1, "logs": {"loss": 1.0}, "secs": 1})
    assert out.getvalue() == "" and len(progress.history) == 1


def test_tf_cpp_chatter_is_recognised_and_user_lines_are_not():
    assert is_tf_chatter("I0000 00:00:1795644285.095072   12110 port.cc:153] oneDNN custom ops")
    assert is_tf_chatter("W1125 22:01:51.123456   12110 dataset.cc:997] Input of Generator")
    assert is_tf_chatter("E0000 00:00:1795644291.972953   12110 cuda_platform.cc:52] failed "
                         "call to cuInit: INTERNAL")
    assert is_tf_chatter("WARNING: All log messages before absl::InitializeLog() is called are "
                         "written to STDERR")
    assert not is_tf_chatter("E1125 22:01:51.123456   12110 collective_ops.cc:12] Aborted")
    assert not is_tf_chatter("Traceback (most recent call last):")
    assert not is_tf_chatter("I0000 is what the user printed")
    assert not is_tf_chatter("WARNING:tensorflow:Your input ran out of data")


def test_quiet_start_keeps_tf_chatter_out_of_fd_2_and_passes_the_rest(tmp_path):
    import subprocess
    import sys
    code = (
        "import os, sys\n"
        "from tfspark.tf_chatter import quiet_start\n"
        "print('before', file=sys.stderr, flush=True)\n"
        "with quiet_start():\n"
        "    os.write(2, b'I0000 00:00:1795644285.095072   12110 port.cc:153] oneDNN custom\\n')\n"
        "    os.write(2, b'E0000 00:00:1795644291.972953   12110 cuda_platform.cc:52] failed call"
        " to cuInit\\n')\n"
        "    print('a real problem', file=sys.stderr)\n"
        "print('after', file=sys.stderr, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stderr.splitlines() == ["before", "a real problem", "after"]


def test_the_cpu_instructions_notice_is_chatter_on_both_its_lines():
    assert is_tf_chatter("I0000 00:00:1796623831.179058    4227 cpu_feature_guard.cc:227] This "
                         "TensorFlow binary is optimized to use available CPU instructions")
    assert is_tf_chatter("To enable the following instructions: AVX2 AVX512F FMA, in other "
                         "operations, rebuild TensorFlow with the appropriate compiler flags.")
