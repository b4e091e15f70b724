"""The HDFS delegation tokens a TF cluster's nodes get from the driver (Kerberized HDFS).

Driver side. At :meth:`tfspark.TFCluster.run`, before any node starts, the driver gets a token
for every Kerberized NameNode the job names (``fs.defaultFS``, ``log_dir``, ``stage_files``,
``spark.kerberos.access.hadoopFileSystems``): no ticket or keytab is an error then, not a node
failing later. Each node gets them over the control channel (see :mod:`tfspark._node.task`). While
the cluster runs, a thread asks again every :data:`REFRESH_SECS`: that renews the driver's own
tokens when due (see :mod:`tfspark.fs.jvm_tokens`) and, when a token is re-issued (or Spark's
is), hands the new ones to every node.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Dict, List, Optional

from tfspark import fs

logger = logging.getLogger(__name__)

#: how often the driver renews/re-checks its tokens while a cluster runs
REFRESH_SECS = 5.0


def hdfs_paths(default_fs: str, conf: Dict[str, str], paths: List[Optional[str]]) -> List[str]:
    """Every filesystem the job names: the default one, Spark's list of extra ones, and the
    job's own paths."""
    extra = [u.strip() for u in conf.get("spark.kerberos.access.hadoopFileSystems", "")
             .split(",") if u.strip()]
    return [p for p in [default_fs, *extra, *paths] if p]


class NodeTokens:
    """The current tokens (URL strings; empty where HDFS is not Kerberized) and the thread
    that keeps them so."""

    def __init__(self, paths: List[str]):
        self.paths = paths
        self.current = self._fetch()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"NodeTokens({len(self.current)} tokens for {self.paths})"

    def _fetch(self) -> List[str]:
        return [t.url_string() for t in fs.delegation_tokens(self.paths)]

    def keep_current(self, on_change: Callable[[List[str]], None]) -> None:
        """Start refreshing (once; nothing to do without tokens); ``on_change(tokens)`` gets
        each new set."""
        if not self.current or self._thread is not None:
            return

        def refresh() -> None:
            while not self._stop.wait(REFRESH_SECS):
                try:
                    tokens = self._fetch()
                except Exception as e:  # noqa: BLE001 - tried again in REFRESH_SECS
                    logger.warning("tfspark: could not renew the HDFS delegation tokens: %s", e)
                    continue
                if tokens != self.current:
                    logger.info("tfspark: HDFS delegation tokens re-issued; handing them to "
                                "the nodes")
                    self.current = tokens
                    on_change(tokens)

        self._thread = threading.Thread(target=refresh, name="tfspark-hdfs-tokens",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
