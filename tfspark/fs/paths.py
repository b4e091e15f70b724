"""Path strings: URLs split and joined, and tfspark's one rule for resolving a path
(:func:`resolve`). No I/O except reading the Hadoop configuration for ``fs.defaultFS``."""
from __future__ import annotations

import getpass
import os
import posixpath
import re
from typing import Optional, Tuple

from tfspark.fs import config
from tfspark.fs.errors import error

SCHEMES = ("hdfs", "webhdfs", "file")

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(.*)$")


def split_url(path: str) -> Tuple[str, str, str]:
    """``(scheme, authority, path)``; a plain path gives ``("", "", path)``."""
    match = _URL.match(str(path))
    if not match:
        return "", "", str(path)
    return match.group(1).lower(), match.group(2), match.group(3) or "/"


def check_scheme(path: str) -> str:
    scheme = split_url(path)[0]
    if scheme and scheme not in SCHEMES:
        raise error("unsupported", f"unsupported filesystem scheme {scheme!r} in {path!r}; "
                    f"supported: {', '.join(s + '://' for s in SCHEMES)} and plain local paths")
    return scheme


def current_user() -> str:
    """The HDFS user: ``$HADOOP_USER_NAME`` or the OS user."""
    return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()


def join(base: str, *parts: str) -> str:
    """Join path parts, keeping ``scheme://authority`` of URLs."""
    scheme, authority, path = split_url(base)
    if not scheme:
        return os.path.join(base, *parts)
    return f"{scheme}://{authority}{posixpath.join(path, *parts)}"


def resolve(path: str, default_fs: Optional[str] = None, cwd: Optional[str] = None,
            user: Optional[str] = None) -> str:
    """The absolute URL of ``path``: tfspark's one rule for every path it is given.

    * ``scheme://authority/path`` (``hdfs://nn:8020/data``, ``file:///tmp/x``): as it is.
    * ``hdfs:///path`` (no authority): on the NameNode of ``default_fs``, as Hadoop does.
    * a plain absolute path: that path on ``default_fs``.
    * a plain relative path: on HDFS, under the user's home ``/user/<user>``; on a local
      default filesystem, under ``cwd`` (default: the current directory).

    ``default_fs`` defaults to :func:`tfspark.fs.default_fs` (``fs.defaultFS``).
    """
    default_fs = default_fs or config.default_fs()
    scheme = check_scheme(path)
    base_scheme, base_authority, _ = split_url(default_fs)
    check_scheme(default_fs)
    if scheme:
        _, authority, remote = split_url(path)
        if authority or scheme == "file":
            return str(path)
        if scheme != base_scheme or not base_authority:
            raise error("unsupported", f"{path!r} names no NameNode, and fs.defaultFS "
                        f"({default_fs}) is not a {scheme}:// URL to take it from: write "
                        f"{scheme}://host:port{remote}, or set fs.defaultFS in "
                        "HADOOP_CONF_DIR's core-site.xml")
        return f"{scheme}://{base_authority}{posixpath.normpath(remote)}"
    if base_scheme in ("", "file"):
        local = os.path.join(cwd or os.getcwd(), os.path.expanduser(str(path)))
        return "file://" + os.path.normpath(local)
    remote = str(path)
    if not remote.startswith("/"):
        remote = posixpath.join(f"/user/{user or current_user()}", remote)
    return f"{base_scheme}://{base_authority}{posixpath.normpath(remote)}"


def absolute(path: str, default_fs: Optional[str] = None, cwd: Optional[str] = None,
             user: Optional[str] = None) -> str:
    """:func:`resolve`, except that a plain path that stays local comes back as a plain path
    (usable by TensorFlow and ``os``) rather than a ``file://`` URL."""
    resolved = resolve(path, default_fs, cwd, user)
    if resolved.startswith("file://") and not split_url(str(path))[0]:
        return resolved[len("file://"):]
    return resolved
