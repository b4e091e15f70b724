"""Driver side of live training progress: shows the chief's ``model.fit`` events and keeps the
per-epoch history (:attr:`tfspark._driver.cluster.TFCluster.history`).

Where the driver's output goes decides how progress looks:

* a Jupyter notebook: a ``tqdm`` bar per epoch (a widget when ``ipywidgets`` is installed);
* a terminal: a single ``tqdm`` line per epoch, redrawn in place;
* anything else (``spark-submit`` logs, a pipe): plain lines -- one every
  :data:`~tfspark.constants.PROGRESS_LINE_SECS` (``TFSPARK_PROGRESS_LINE_SECS``) within an
  epoch, and one at each epoch's end.

Each epoch ends with a line such as
``tfspark: epoch 2/5: loss 0.4123 - accuracy 0.8812 - 1520 rows/s - 3.1 s``.
Node output lines go through :meth:`TrainingProgress.write`, so they do not tear a bar.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, TextIO

from tfspark import constants


class TrainingProgress:
    """Shows progress events from the reporting node and records one entry per epoch."""

    def __init__(self, enabled: bool = True, out: Optional[TextIO] = None,
                 line_secs: Optional[float] = None):
        self.enabled = enabled
        self._out = out
        self._line_secs = line_secs if line_secs is not None else float(
            os.environ.get(constants.PROGRESS_LINE_SECS_ENV, constants.PROGRESS_LINE_SECS))
        self._lock = threading.RLock()
        self._history: Dict[int, Dict[str, float]] = {}
        self._bar: Any = None
        self._last_line = 0.0
        self._fit_start: Optional[float] = None
        self._workers: Optional[int] = None  # training nodes of the running attempt
        self._full_workers: Optional[int] = None  # ... of the full cluster
        #: training on a streaming query: one fit per micro-batch, shown per micro-batch
        self.streaming = False
        self._stream = {"batches": 0, "rows": 0, "secs": 0.0, "last_line": None}
        #: also told every event (e.g. MLflow tracking), outside the display's lock
        self.listeners: List[Callable[[Dict[str, Any]], None]] = []
        self._last_logs: Dict[str, float] = {}

    def set_size(self, workers: int, full_workers: int) -> None:
        """The running attempt trains on ``workers`` of the cluster's ``full_workers`` nodes:
        recorded with each epoch (``workers``), and shown when fewer."""
        with self._lock:
            self._workers, self._full_workers = workers, full_workers

    def _size(self) -> str:
        if self._workers is None or self._workers == self._full_workers:
            return ""
        return f" ({self._workers} of {self._full_workers} workers)"

    @property
    def out(self) -> TextIO:
        return self._out or sys.stderr

    @property
    def history(self) -> List[Dict[str, float]]:
        """One dict per finished epoch, in epoch order: ``epoch`` (1-based), the loss and
        metrics Keras logged (``val_*`` too), ``rows`` trained in all and ``rows_per_sec`` (when
        known), ``secs``, and ``workers``: the nodes that trained on data when it ended (chief
        + workers; under ParameterServerStrategy, the workers), fewer than the cluster's after
        executors were lost.
        An epoch run again after a restart keeps its latest values."""
        with self._lock:
            return [dict(self._history[e]) for e in sorted(self._history)]

    # ------------------------------------------------------------------------------- events
    def on_event(self, event: Dict[str, Any]) -> None:
        if event.get("event") == "stream_batch":  # with its fit's loss and metrics
            with self._lock:
                event = dict(event, logs=dict(self._last_logs))
        self._display(event)
        for listener in list(self.listeners):
            listener(event)

    def _display(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        with self._lock:
            if kind == "train_begin":
                self._fit_start = time.monotonic()
            elif kind == "stream_batch":
                if event.get("trained"):
                    self._show_stream(event)
                else:
                    self._print(f"tfspark: micro-batch {event['batch_id']}, which Spark "
                                "replayed, was trained before (the backup holds it): skipped")
            elif kind == "step":
                if self.enabled and not self.streaming:
                    self._show_step(event)
            elif kind == "epoch_end" and self.streaming:  # a micro-batch's fit
                self._last_logs = dict(event.get("logs") or {})
            elif kind == "epoch_end":
                self._record(event)
                if self.enabled:
                    self._close_bar()
                    self._print(f"tfspark: {_epoch(event)}{self._size()}: "
                                f"{_summary(event, with_secs=True)}")
            elif kind == "train_end":
                self._close_bar()

    def _record(self, event: Dict[str, Any]) -> None:
        entry: Dict[str, float] = {"epoch": int(event["epoch"])}
        entry.update(event.get("logs") or {})
        rate = _rows_per_sec(event)
        if rate is not None:
            entry["rows"] = int(event["rows"])
            entry["rows_per_sec"] = rate
        entry["secs"] = float(event.get("secs") or 0.0)
        if self._workers is not None:
            entry["workers"] = self._workers
        self._history[entry["epoch"]] = entry

    def _show_stream(self, event: Dict[str, Any]) -> None:
        """A line for the first micro-batch, then at most one per ``line_secs``: micro-batches
        and rows so far, their rate, the last fit's loss and metrics, the newest version."""
        stream = self._stream
        stream["batches"] += 1
        stream["rows"] += int(event.get("rows") or 0)
        stream["secs"] += float(event.get("secs") or 0.0)
        now = time.monotonic()
        if not self.enabled or (stream["last_line"] is not None
                                and now - stream["last_line"] < self._line_secs):
            return
        stream["last_line"] = now
        parts = [f"{name} {value:.4f}" for name, value in event["logs"].items()]
        if stream["secs"]:
            parts.append(f"{stream['rows'] / stream['secs']:.0f} rows/s")
        if event.get("version"):
            parts.append(f"model version {event['version']}")
        self._print(f"tfspark: micro-batch {event['batch_id']}{self._size()}: "
                    f"{stream['batches']} micro-batches, {stream['rows']} rows trained"
                    + "".join(f" - {p}" for p in parts))

    def _show_step(self, event: Dict[str, Any]) -> None:
        mode = _display_mode(self.out)
        if mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self._line_secs and event.get("step") != event.get(
                    "steps"):
                self._last_line = now
                steps = f"/{event['steps']}" if event.get("steps") else ""
                eta = self._eta(event)
                self._print(f"tfspark: {_epoch(event)}{self._size()} step {event['step']}{steps}: "
                            f"{_summary(event)}{f' - ETA {eta}' if eta else ''}")
            return
        bar = self._bar_for(event, mode)
        bar.update(max(0, int(event.get("step") or 0) - bar.n))
        postfix = dict((event.get("logs") or {}))
        rate = _rows_per_sec(event)
        if rate is not None:
            postfix["rows/s"] = f"{rate:.0f}"
        bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                         for k, v in postfix.items()}, refresh=False)
        bar.refresh()

    def _bar_for(self, event: Dict[str, Any], mode: str) -> Any:
        if self._bar is not None and self._bar.desc == _epoch(event):
            return self._bar
        self._close_bar()
        tqdm = _tqdm_class(mode)
        self._bar = tqdm(total=event.get("steps"), desc=_epoch(event), unit="step",
                         leave=False, file=None if mode == "widget" else self.out,
                         dynamic_ncols=True)
        self._bar.start_t -= float(event.get("secs") or 0.0)  # the epoch began that long ago
        return self._bar

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _eta(self, event: Dict[str, Any]) -> Optional[str]:
        """Time left for the whole ``fit``, from this epoch's pace."""
        step, steps, secs = event.get("step"), event.get("steps"), event.get("secs")
        epochs, epoch = event.get("epochs"), event.get("epoch")
        if not (step and steps and secs and epochs and epoch):
            return None
        per_step = secs / step
        left = per_step * (steps - step) + per_step * steps * (epochs - epoch)
        return time.strftime("%H:%M:%S", time.gmtime(left))

    # ------------------------------------------------------------------------------- output
    def write(self, stream: TextIO, text: str) -> None:
        """Print a line (a node's output) without tearing a progress bar."""
        with self._lock:
            with self._bar_cleared():
                stream.write(text + "\n")
                stream.flush()

    def _print(self, text: str) -> None:
        self.write(self.out, text)

    @contextlib.contextmanager
    def _bar_cleared(self) -> Iterator[None]:
        if self._bar is None or not hasattr(self._bar, "clear") or _display_mode(
                self.out) == "widget":
            yield
            return
        self._bar.clear()
        try:
            yield
        finally:
            self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            self._close_bar()


def _epoch(event: Dict[str, Any]) -> str:
    epochs = f"/{event['epochs']}" if event.get("epochs") else ""
    return f"epoch {event.get('epoch')}{epochs}"


def _rows_per_sec(event: Dict[str, Any]) -> Optional[float]:
    rows, secs = event.get("rows"), event.get("secs")
    if rows is None or not secs:
        return None
    return rows / secs


def _summary(event: Dict[str, Any], with_secs: bool = False) -> str:
    parts = [f"{name} {value:.4f}" for name, value in (event.get("logs") or {}).items()]
    rate = _rows_per_sec(event)
    if rate is not None:
        parts.append(f"{rate:.0f} rows/s")
    if with_secs and event.get("secs") is not None:
        parts.append(f"{event['secs']:.1f} s")
    return " - ".join(parts)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def _display_mode(out: TextIO) -> str:
    """"widget" (Jupyter with ipywidgets), "bar" (a terminal, or Jupyter without ipywidgets:
    it renders a redrawn text line) or "lines"."""
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            return "widget"
        except ImportError:
            return "bar"
    isatty = getattr(out, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def _tqdm_class(mode: str) -> Any:
    if mode == "widget":
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm
