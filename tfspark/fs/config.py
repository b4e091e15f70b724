"""The Hadoop configuration tfspark reads: ``fs.defaultFS`` and the NameNodes' WebHDFS
addresses, from the Spark driver's Hadoop configuration or $HADOOP_CONF_DIR's XML files."""
from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from typing import Dict, List, Optional

from tfspark.fs.errors import error

DEFAULT_NAMENODE_RPC_PORT = 8020
DEFAULT_NAMENODE_HTTP_PORT = 9870


def hadoop_conf(conf_dir: Optional[str] = None) -> Dict[str, str]:
    """Properties of core-site.xml and hdfs-site.xml in ``conf_dir`` (default $HADOOP_CONF_DIR)."""
    conf_dir = conf_dir or os.environ.get("HADOOP_CONF_DIR")
    props: Dict[str, str] = {}
    if not conf_dir:
        return props
    for name in ("core-site.xml", "hdfs-site.xml"):
        path = os.path.join(conf_dir, name)
        if not os.path.exists(path):
            continue
        try:
            root = ElementTree.parse(path).getroot()
        except ElementTree.ParseError as e:
            raise error("io", f"could not parse Hadoop configuration {path}: {e}") from e
        for prop in root.iter("property"):
            key, value = prop.findtext("name"), prop.findtext("value")
            if key and value is not None:
                props[key.strip()] = value.strip()
    return props


def use_hadoop_conf(conf_dir: Optional[str]) -> None:
    """In a Spark task: give an executor without $HADOOP_CONF_DIR the driver's (``conf_dir``,
    captured on the driver), when that folder exists here too."""
    if conf_dir and not os.environ.get("HADOOP_CONF_DIR") and os.path.isdir(conf_dir):
        os.environ["HADOOP_CONF_DIR"] = conf_dir


def default_fs() -> str:
    """The cluster's ``fs.defaultFS``: the one of the Spark application this process drives, if
    it drives one (classic or Connect: asked of its backend, which also sees
    ``spark.hadoop.*`` settings), else $HADOOP_CONF_DIR's core-site.xml, else ``file:///``."""
    return _spark_default_fs() or hadoop_conf().get("fs.defaultFS", "file:///")


def _spark_default_fs() -> Optional[str]:
    if "pyspark" not in sys.modules:  # no Spark application in this process (a node's)
        return None
    from tfspark._driver.spark_backend import active_default_fs
    return active_default_fs()


def namenode_http_urls(authority: str, conf: Optional[Dict[str, str]] = None) -> List[str]:
    """WebHDFS base URLs for the NameNode(s) behind an ``hdfs://authority``.

    Looks in the Hadoop config for an HA nameservice of that name, then for the
    ``dfs.namenode.rpc-address[.suffix]`` equal to the authority and takes the matching
    ``dfs.namenode.http-address[.suffix]``; otherwise assumes port 9870 on the same host.
    """
    conf = hadoop_conf() if conf is None else conf
    host = authority.rsplit(":", 1)[0] if ":" in authority else authority
    nameservices = [ns.strip() for ns in conf.get("dfs.nameservices", "").split(",")]
    if ":" not in authority and authority in nameservices:
        namenodes = conf.get(f"dfs.ha.namenodes.{authority}", "").split(",")
        urls = [conf.get(f"dfs.namenode.http-address.{authority}.{nn.strip()}")
                for nn in namenodes if nn.strip()]
        if any(urls):
            return [f"http://{u}" for u in urls if u]
    rpc = authority if ":" in authority else f"{authority}:{DEFAULT_NAMENODE_RPC_PORT}"
    for key, value in conf.items():
        if key.startswith("dfs.namenode.rpc-address") and value == rpc:
            http = conf.get("dfs.namenode.http-address" + key[len("dfs.namenode.rpc-address"):])
            if http:
                http_host, _, http_port = http.rpartition(":")
                return [f"http://{host if http_host in ('0.0.0.0', '') else http_host}:"
                        f"{http_port}"]
    return [f"http://{host}:{DEFAULT_NAMENODE_HTTP_PORT}"]
