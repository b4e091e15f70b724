"""What YARN can say when an application's executors do not all arrive.

A TF cluster needs its executors all at once; on YARN the usual reason some never register is
that the executor container (heap + overhead) does not fit in what the queue or any
NodeManager has free. This module computes the container Spark asks for from its settings and
asks the ResourceManager's REST API (``/ws/v1/cluster/metrics`` and ``/nodes``) what is free,
so that the pre-flight error can say it in YARN's words. Driver side; best effort: a
ResourceManager that cannot be reached leaves its part out of the message.
"""
from __future__ import annotations

import json
import os
import re
import urllib.request
import xml.etree.ElementTree as ElementTree
from typing import Mapping, Optional

#: Spark's defaults (spark.executor.memoryOverhead: max(384 MiB, factor x heap)).
_MIN_OVERHEAD_MB, _OVERHEAD_FACTOR = 384, 0.10


def size_mb(value: str, default_unit: str = "m") -> int:
    """A JVM/Spark size (``"1g"``, ``"1500m"``, ``"512"``) in MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", str(value).lower())
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = int(match.group(1)), match.group(2) or default_unit
    return {"k": number // 1024, "m": number, "g": number * 1024,
            "t": number * 1024 * 1024}[unit]


def executor_container_mb(conf: Mapping[str, str]) -> dict:
    """The memory of one executor container as Spark asks YARN for it, with its parts."""
    heap = size_mb(conf.get("spark.executor.memory", "1g"))
    factor = float(conf.get("spark.executor.memoryOverheadFactor", _OVERHEAD_FACTOR))
    overhead = size_mb(conf["spark.executor.memoryOverhead"]) \
        if "spark.executor.memoryOverhead" in conf else max(_MIN_OVERHEAD_MB, int(heap * factor))
    pyspark = size_mb(conf.get("spark.executor.pyspark.memory", "0"))
    return {"heap": heap, "overhead": overhead, "pyspark": pyspark,
            "total": heap + overhead + pyspark}


def resource_manager_url(conf_dir: Optional[str] = None) -> Optional[str]:
    """The ResourceManager's web address from yarn-site.xml in $YARN_CONF_DIR/$HADOOP_CONF_DIR."""
    for folder in (conf_dir, os.environ.get("YARN_CONF_DIR"), os.environ.get("HADOOP_CONF_DIR")):
        path = os.path.join(folder, "yarn-site.xml") if folder else ""
        if not path or not os.path.exists(path):
            continue
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError:
            return None
        props = {p.findtext("name", "").strip(): p.findtext("value", "").strip()
                 for p in root.iter("property")}
        address = props.get("yarn.resourcemanager.webapp.address") or (
            f"{props['yarn.resourcemanager.hostname']}:8088"
            if props.get("yarn.resourcemanager.hostname") else None)
        return f"http://{address}" if address else None
    return None


def free_memory(rm_url: str, timeout: float = 5.0) -> Optional[dict]:
    """``{"available": MB in the cluster, "largest_node": MB free on the best NodeManager}``
    from the ResourceManager, or None if it cannot be asked."""
    try:
        metrics = _get(f"{rm_url}/ws/v1/cluster/metrics", timeout)["clusterMetrics"]
        nodes = (_get(f"{rm_url}/ws/v1/cluster/nodes", timeout).get("nodes") or {}).get(
            "node", [])
    except (OSError, ValueError, KeyError):
        return None
    running = [n for n in nodes if n.get("state") == "RUNNING"]
    return {"available": int(metrics.get("availableMB", 0)),
            "largest_node": max((int(n.get("availMemoryMB", 0)) for n in running), default=0),
            "nodes": len(running)}


def _get(url: str, timeout: float) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def shortfall(conf: Mapping[str, str], registered: int, waited: float) -> str:
    """Why a YARN application has fewer executors than it asked for, in YARN's terms."""
    asked = conf.get("spark.executor.instances", "2")
    container = executor_container_mb(conf)
    cores = conf.get("spark.executor.cores", "1")
    parts = f"spark.executor.memory {container['heap']} MB + memoryOverhead " \
            f"{container['overhead']} MB" + (f" + pyspark.memory {container['pyspark']} MB"
                                             if container["pyspark"] else "")
    text = (f"YARN granted {registered} of the {asked} executors this application asked for "
            f"(spark.executor.instances) within {waited:.0f}s. Each executor container asks "
            f"for {container['total']} MB ({parts}) and {cores} vcores")
    rm_url = resource_manager_url()
    free = free_memory(rm_url) if rm_url else None
    if free is not None:
        text += (f"; the ResourceManager ({rm_url}) has {free['available']} MB available, at "
                 f"most {free['largest_node']} MB free on one of its {free['nodes']} running "
                 "NodeManagers")
    return text + (". Ask for smaller containers (spark.executor.memory, "
                   "spark.executor.memoryOverhead), fewer executors with more cores each, or a "
                   "queue with more free memory.")
