"""Paths and file I/O for tfspark: local files and HDFS.

This package owns every path tfspark touches: only ``tfspark.fs`` talks to HDFS.  TensorFlow cannot
open ``hdfs://`` here (no libhdfs), so HDFS is reached through WebHDFS with the ``hdfs``
package (HdfsCLI); the NameNode's HTTP address is looked up in ``$HADOOP_CONF_DIR``.

Supported paths: ``hdfs://namenode[:port]/p``, ``webhdfs://host:httpport/p``, ``file:///p`` and
plain local paths (absolute or relative).  Every failure raises
:class:`tfspark.errors.FileSystemError` naming the path and the problem; its ``reason``
attribute is one of ``not_found``, ``permission``, ``exists``, ``unreachable``,
``unsupported``, ``io``.

Writes are atomic: data goes to a hidden sibling ``.<name>._tmp-<id>`` that is renamed into
place once complete, so an interrupted write never leaves a partial file at the final path::

    fs = get_filesystem("hdfs://nn:8020/models")
    fs.upload("/tmp/export", "hdfs://nn:8020/models/v1", n_threads=4)
    with atomic_output("hdfs://nn:8020/models/v2", overwrite=True) as local_dir:
        model.save(local_dir)          # written locally, uploaded, then renamed into place
"""
from __future__ import annotations

import os
import threading
from typing import Dict, List, Optional, Tuple

from tfspark.errors import FileSystemError
from tfspark.fs import credentials
from tfspark.fs.base import CHUNK, Data, FileStatus, FileSystem
from tfspark.fs.config import (DEFAULT_NAMENODE_HTTP_PORT, DEFAULT_NAMENODE_RPC_PORT,
                               default_fs, hadoop_conf, namenode_http_urls, use_hadoop_conf)
from tfspark.fs.errors import error
from tfspark.fs.hdfs import HdfsFileSystem
from tfspark.fs.local import LOCAL, LocalFileSystem, scratch_dir
from tfspark.fs.paths import SCHEMES, absolute, check_scheme, current_user, join, resolve, split_url

__all__ = ["FileSystemError", "FileStatus", "FileSystem", "LocalFileSystem", "HdfsFileSystem",
           "LOCAL", "SCHEMES", "CHUNK", "Data", "DEFAULT_NAMENODE_HTTP_PORT",
           "DEFAULT_NAMENODE_RPC_PORT", "split_url", "join", "resolve", "absolute",
           "current_user", "default_fs", "hadoop_conf", "namenode_http_urls",
           "use_hadoop_conf", "get_filesystem", "exists", "status", "isdir", "listdir", "glob",
           "mkdirs", "delete", "chmod", "rename", "open", "write", "read_bytes", "upload",
           "download", "atomic_output", "delegation_tokens", "handed_tokens", "scratch_dir"]

_cache: Dict[tuple, HdfsFileSystem] = {}
_cache_lock = threading.Lock()


def get_filesystem(path: str, user: Optional[str] = None) -> FileSystem:
    """The filesystem of ``path``: :data:`LOCAL` or an :class:`HdfsFileSystem`.

    HDFS filesystems are cached per (scheme, authority, user, $HADOOP_CONF_DIR).  ``user``
    defaults to ``$HADOOP_USER_NAME`` or the OS user.
    """
    scheme = check_scheme(path)
    if scheme in ("", "file"):
        return LOCAL
    _, authority, _ = split_url(path)
    conf = hadoop_conf()
    if not authority:
        default_scheme, authority, _ = split_url(conf.get("fs.defaultFS", ""))
        if default_scheme != scheme or not authority:
            raise error("unsupported", f"{path!r} names no NameNode and fs.defaultFS in "
                        f"HADOOP_CONF_DIR={os.environ.get('HADOOP_CONF_DIR')} is not a "
                        f"{scheme}:// URL")
    user = user or current_user()
    key = (scheme, authority, user, os.environ.get("HADOOP_CONF_DIR"))
    with _cache_lock:
        if key not in _cache:
            urls = ([f"http://{authority}"] if scheme == "webhdfs"
                    else namenode_http_urls(authority, conf))
            kerberos = credentials.kerberized(conf)
            if kerberos and credentials.running_on_driver():
                from tfspark.fs import jvm_tokens
                jvm_tokens.install()  # the JVM's Kerberos login, for tokens
            _cache[key] = HdfsFileSystem(scheme, authority, urls, user, kerberos=kerberos)
        return _cache[key]


def delegation_tokens(paths: List[str]) -> List["credentials.Token"]:
    """The HDFS delegation tokens a process without Kerberos needs for ``paths``: one per
    Kerberized NameNode among them (none where HDFS is not Kerberized). The driver hands
    them to its TF nodes; raises :class:`FileSystemError` when it has none to give."""
    authorities = []
    for path in paths:
        fs = get_filesystem(path) if split_url(path)[0] in ("hdfs", "webhdfs") else None
        if isinstance(fs, HdfsFileSystem) and fs.kerberos:
            authorities.append(fs.authority)
    urls = {a: namenode_http_urls(a) for a in authorities}
    return credentials.tokens_for(authorities, lambda a: urls[a])


def handed_tokens(paths: List[str], hosts: Optional[Tuple[str, str]] = None
                  ) -> "credentials.HandedTokens":
    """:func:`delegation_tokens` for ``paths``, packed for a Spark task's closure; with
    ``hosts`` (the driver's (bind, advertised) addresses for executors to dial) the tasks
    also ask this driver's :class:`~tfspark.fs.credentials.TokenDesk` for renewed ones."""
    tokens = delegation_tokens(paths)
    if not tokens or hosts is None:
        return credentials.HandedTokens([t.url_string() for t in tokens])
    authorities = sorted({get_filesystem(p).authority for p in paths
                          if split_url(p)[0] in ("hdfs", "webhdfs")})
    desk = credentials.token_desk(hosts)
    return credentials.HandedTokens([t.url_string() for t in tokens], authorities,
                                    (desk.address, desk.secret))


# ---------------------------------------------------------------------------------------------
# module-level shortcuts: each picks the filesystem of its path


def exists(path: str) -> bool:
    return get_filesystem(path).exists(path)


def status(path: str) -> FileStatus:
    return get_filesystem(path).status(path)


def isdir(path: str) -> bool:
    return get_filesystem(path).isdir(path)


def listdir(path: str) -> List[str]:
    return get_filesystem(path).listdir(path)


def glob(pattern: str) -> List[str]:
    return get_filesystem(pattern).glob(pattern)


def mkdirs(path: str) -> None:
    get_filesystem(path).mkdirs(path)


def delete(path: str, recursive: bool = False, missing_ok: bool = False) -> None:
    get_filesystem(path).delete(path, recursive=recursive, missing_ok=missing_ok)


def chmod(path: str, mode: int) -> None:
    get_filesystem(path).chmod(path, mode)


def rename(src: str, dst: str) -> None:
    get_filesystem(src).rename(src, dst)


def open(path: str, mode: str = "rb", overwrite: bool = False, encoding: str = "utf-8"):
    """Context manager; see :meth:`FileSystem.open`."""
    return get_filesystem(path).open(path, mode, overwrite=overwrite, encoding=encoding)


def write(path: str, data: Data, overwrite: bool = False) -> None:
    get_filesystem(path).write(path, data, overwrite=overwrite)


def read_bytes(path: str) -> bytes:
    return get_filesystem(path).read_bytes(path)


def upload(local_path: str, path: str, overwrite: bool = False, n_threads: int = 4) -> None:
    get_filesystem(path).upload(local_path, path, overwrite=overwrite, n_threads=n_threads)


def download(path: str, local_path: str, overwrite: bool = False, n_threads: int = 4) -> None:
    get_filesystem(path).download(path, local_path, overwrite=overwrite, n_threads=n_threads)


def atomic_output(path: str, overwrite: bool = False):
    """Context manager yielding a local path that becomes ``path`` on success.

    For local paths it is a hidden sibling; for HDFS a local staging path that is uploaded
    to a hidden sibling and renamed into place.  On an exception the temporary is deleted
    and ``path`` is untouched.
    """
    return get_filesystem(path).atomic_output(path, overwrite=overwrite)
