"""examples/notebooks/mnist.ipynb, executed as a user would run it: in a Jupyter kernel
(nbclient + ipykernel), once on a classic local Spark and once as a client of a local Spark
Connect server (``SPARK_REMOTE=sc://localhost:PORT`` in the kernel's environment; the notebook
is the same).

Checks what the user sees: no cell raised, tfspark's training progress was shown, the training
curve was drawn, and the printed test accuracy is above a bar. The executed notebook stays in
tmp_path; the committed one has no outputs.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat/nbclient "
                               "(pip install tfspark[notebook], or requirements-pinned.txt)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient "
                               "(pip install tfspark[notebook], or requirements-pinned.txt)")
pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel "
                    "(pip install tfspark[notebook], or requirements-pinned.txt)")
pytest.importorskip("matplotlib", reason="the notebook's plot needs matplotlib "
                    "(pip install tfspark[notebook], or requirements-pinned.txt)")

pytestmark = pytest.mark.slow

NOTEBOOK = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples",
                        "notebooks", "mnist.ipynb")
# digits, 2 workers, 3 epochs: observed 0.955-0.967 (classic and Connect); the bar leaves margin
MIN_ACCURACY = 0.85
ACCURACY_LINE = re.compile(r"^test accuracy: ([0-9.]+)$", re.MULTILINE)
EPOCHS = 3  # the notebook's EPOCHS
# the plot cell's summary of cluster.history
HISTORY_LINE = re.compile(r"^(\d+) epochs: loss ([0-9.]+) -> ([0-9.]+), ", re.MULTILINE)
# tfspark's live progress on the driver: in a kernel, a tqdm bar per epoch ("epoch 1/3:  65%|")
# and, in every display mode, a line at each epoch's end ("tfspark: epoch 3/3: loss ...")
PROGRESS_BAR = re.compile(r"epoch \d+/\d+: +\d+%\|")
LAST_EPOCH_LINE = f"tfspark: epoch {EPOCHS}/{EPOCHS}: loss "


def _kernel_env(mode: str, work: str, server: dict) -> dict:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",  # loopback
               TFSPARK_NOTEBOOK_DIR=work, IPYTHONDIR=os.path.join(work, "ipython"),
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    for key in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "MASTER",
                "SPARK_API_MODE", "MPLBACKEND", "MNIST_PATH"):
        env.pop(key, None)
    if mode == "connect":  # the session's local Connect server (a user's own sc://host:15002)
        env.update(server["env"])
    return env


def _python_kernel(tmp_path, monkeypatch) -> str:
    """A "python3" kernelspec that runs this interpreter, found before any installed one."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tfspark tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    return "python3"


def _outputs(nb, output_type):
    return [(i, out) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.output_type == output_type]


def _text(out) -> str:
    if out.output_type == "stream":
        return out.text
    return out.get("data", {}).get("text/plain", "")


@pytest.mark.parametrize("mode", ["classic", "connect"])
def test_mnist_notebook_runs(mode, tmp_path, monkeypatch, request):
    work = tmp_path / "work"
    work.mkdir()
    kernel = _python_kernel(tmp_path, monkeypatch)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"

    client = nbclient.NotebookClient(
        nb, timeout=480, kernel_name=kernel, allow_errors=True,  # all cells run: see them all
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(NOTEBOOK))}})
    started = time.time()
    server = request.getfixturevalue("connect_server") if mode == "connect" else {}
    client.execute(env=_kernel_env(mode, str(work), server))
    elapsed = time.time() - started
    executed = tmp_path / f"mnist-{mode}.ipynb"
    nbformat.write(nb, str(executed))  # for a look after a failure

    text = "\n".join(_text(out) for kind in ("stream", "execute_result", "display_data")
                     for _, out in _outputs(nb, kind))
    errors = [f"cell {i}: {out.ename}: {out.evalue}\n" + "\n".join(out.traceback)[-3000:]
              for i, out in _outputs(nb, "error")]
    assert not errors, f"{executed}:\n" + "\n".join(errors)

    assert ("Spark Connect" if mode == "connect" else "classic") in text, text[-3000:]
    streams = "\n".join(out.text for _, out in _outputs(nb, "stream"))
    assert LAST_EPOCH_LINE in streams and PROGRESS_BAR.search(streams), \
        f"no training progress in the outputs:\n{streams[-3000:]}"
    history = HISTORY_LINE.search(text)
    assert history, f"no summary of cluster.history:\n{text[-3000:]}"
    assert int(history.group(1)) == EPOCHS, history.group(0)
    assert float(history.group(3)) < float(history.group(2)), history.group(0)  # loss fell
    assert any("image/png" in out.get("data", {}) for _, out in _outputs(nb, "display_data")), \
        "the training curve cell drew no image"
    found = ACCURACY_LINE.findall(text)
    assert found, f"no 'test accuracy: ...' line:\n{text[-3000:]}"
    assert float(found[-1]) > MIN_ACCURACY, text[-3000:]
    print(f"{mode}: notebook ran in {elapsed:.0f}s, test accuracy {found[-1]}")
