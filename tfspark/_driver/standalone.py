"""What a Spark standalone master says about this application: the cores it was granted.

A standalone application without ``spark.cores.max`` gets every free core of the cluster, a
number no setting tells the driver. The master grants those cores when the application
registers -- before its executors have started, let alone registered -- and shows the grant in
its web UI's JSON (``/json/``: ``activeapps[].cores``). So the grant, unlike the executors
registered so far, does not change with how fast executors start. Driver side; best effort: a
master UI that cannot be reached gives ``None``.
"""
from __future__ import annotations

import json
import os
import urllib.request
from typing import Mapping, Optional
from urllib.parse import urlsplit

#: The master's web UI port where neither the settings nor the environment say (Spark's).
_DEFAULT_UI_PORT = "8080"


def master_ui_urls(master: str, conf: Mapping[str, str]) -> list:
    """The JSON URLs of the master(s) of a ``spark://host:port[,host2:port2]`` URL: the UI port
    from ``spark.master.ui.port``, ``SPARK_MASTER_WEBUI_PORT`` or Spark's default 8080."""
    if not master.startswith("spark://"):
        return []
    port = conf.get("spark.master.ui.port") or os.environ.get("SPARK_MASTER_WEBUI_PORT") \
        or _DEFAULT_UI_PORT
    hosts = [urlsplit(f"spark://{address}").hostname
             for address in master[len("spark://"):].split(",")]
    return [f"http://{host}:{port}/json/" for host in hosts if host]


def granted_cores(master: str, app_id: str, conf: Mapping[str, str],
                  timeout: float = 5.0) -> Optional[int]:
    """Cores the standalone master granted application ``app_id``, or None if no master UI
    answers about it (not standalone, UI off or unreachable, or the app not listed)."""
    for url in master_ui_urls(master, conf):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                state = json.load(response)
        except (OSError, ValueError):
            continue
        for app in state.get("activeapps", []):
            if app.get("id") == app_id and isinstance(app.get("cores"), int):
                return app["cores"]
    return None
