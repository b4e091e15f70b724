"""Paths and file I/O for tfspark: local files and HDFS.

This module owns every path tfspark touches: only ``fs.py`` talks to HDFS.  TensorFlow cannot
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

import getpass
import grp
import io
import os
import posixpath
import pwd
import queue
import re
import shutil
import stat as stat_mod
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import IO, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from tfspark.errors import FileSystemError

SCHEMES = ("hdfs", "webhdfs", "file")
DEFAULT_NAMENODE_RPC_PORT = 8020
DEFAULT_NAMENODE_HTTP_PORT = 9870
CHUNK = 1 << 20

Data = Union[bytes, str, IO, Iterable[bytes]]


# ---------------------------------------------------------------------------------------------
# errors


def _error(reason: str, message: str) -> FileSystemError:
    err = FileSystemError(message)
    err.reason = reason
    return err


def _classify(exc: BaseException) -> Tuple[str, str]:
    """(reason, short problem text) for an exception from the OS, requests or HdfsCLI."""
    if isinstance(exc, FileNotFoundError):
        return "not_found", "no such file or directory"
    if isinstance(exc, PermissionError):
        return "permission", "permission denied"
    if isinstance(exc, FileExistsError):
        return "exists", "already exists"
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return "io", "is a directory" if isinstance(exc, IsADirectoryError) else "not a directory"
    remote = getattr(exc, "exception", None) or ""  # HdfsCLI: Java exception class name
    text = str(exc)
    if remote == "FileNotFoundException" or "does not exist" in text:
        return "not_found", "no such file or directory"
    if remote in ("AccessControlException", "SecurityException") or "Permission denied" in text:
        return "permission", f"permission denied ({text.splitlines()[0] if text else remote})"
    if remote == "FileAlreadyExistsException" or "already exists" in text:
        return "exists", "already exists"
    if "Authentication failure" in text:
        return "permission", "authentication failed (Kerberos ticket or user name rejected)"
    return "io", f"{type(exc).__name__}: {text}"


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with hdfs
        return False
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def _unreachable(exc: BaseException, fs: "HdfsFileSystem") -> str:
    """Which server a requests connection error failed to reach: the NameNode or a DataNode."""
    failed = getattr(getattr(exc, "request", None), "url", None) or ""
    if failed and not any(failed.startswith(u) for u in fs.http_urls):
        return f"cannot reach the DataNode at {failed.split('/webhdfs')[0]} ({type(exc).__name__})"
    return f"cannot reach the NameNode WebHDFS at {' or '.join(fs.http_urls)} " \
           f"({type(exc).__name__})"


@contextmanager
def _translated(action: str, url: str, fs: Optional["FileSystem"] = None) -> Iterator[None]:
    """Re-raise any failure inside as ``FileSystemError("could not <action> <url>: ...")``."""
    try:
        yield
    except FileSystemError:
        raise
    except Exception as e:
        if _is_connection_error(e) and isinstance(fs, HdfsFileSystem):
            raise _error("unreachable", f"could not {action} {url}: {_unreachable(e, fs)}") from e
        reason, problem = _classify(e)
        raise _error(reason, f"could not {action} {url}: {problem}") from e


# ---------------------------------------------------------------------------------------------
# path strings

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)(.*)$")


def split_url(path: str) -> Tuple[str, str, str]:
    """``(scheme, authority, path)``; a plain path gives ``("", "", path)``."""
    match = _URL.match(str(path))
    if not match:
        return "", "", str(path)
    return match.group(1).lower(), match.group(2), match.group(3) or "/"


def _check_scheme(path: str) -> str:
    scheme = split_url(path)[0]
    if scheme and scheme not in SCHEMES:
        raise _error("unsupported", f"unsupported filesystem scheme {scheme!r} in {path!r}; "
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

    ``default_fs`` defaults to :func:`default_fs` (``fs.defaultFS``).
    """
    default_fs = default_fs or _cluster_default_fs()
    scheme = _check_scheme(path)
    base_scheme, base_authority, _ = split_url(default_fs)
    _check_scheme(default_fs)
    if scheme:
        _, authority, remote = split_url(path)
        if authority or scheme == "file":
            return str(path)
        if scheme != base_scheme or not base_authority:
            raise _error("unsupported", f"{path!r} names no NameNode, and fs.defaultFS "
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


# ---------------------------------------------------------------------------------------------
# Hadoop configuration


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
            raise _error("io", f"could not parse Hadoop configuration {path}: {e}") from e
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
    """The cluster's ``fs.defaultFS``: the running Spark driver's Hadoop configuration if this
    process is one (it also sees ``spark.hadoop.*`` settings), else $HADOOP_CONF_DIR's
    core-site.xml, else ``file:///``."""
    return _spark_default_fs() or hadoop_conf().get("fs.defaultFS", "file:///")


_cluster_default_fs = default_fs  # for resolve(), whose argument has the same name


def _spark_default_fs() -> Optional[str]:
    pyspark = sys.modules.get("pyspark")  # never imported from here: only if the app did
    sc = getattr(getattr(pyspark, "SparkContext", None), "_active_spark_context", None)
    if sc is None:
        return None
    try:
        return sc._jsc.hadoopConfiguration().get("fs.defaultFS")
    except Exception:  # noqa: BLE001 - a stopping context: fall back to the files
        return None


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


# ---------------------------------------------------------------------------------------------
# filesystems


@dataclass(frozen=True)
class FileStatus:
    """What :meth:`FileSystem.status` and :meth:`FileSystem.scandir` return."""
    name: str
    path: str          # full URL (``file://...`` or ``hdfs://...``)
    is_dir: bool
    size: int
    modified: float    # seconds since the epoch
    owner: str
    group: str
    permission: str    # octal, e.g. "755"


class FileSystem:
    """Operations on one filesystem; get one with :func:`get_filesystem`.

    Public methods take URLs or plain paths of this filesystem.  Subclasses implement the
    primitives (``_stat``, ``_scandir``, ``_mkdirs``, ``_delete``, ``_rename``, ``_reader``,
    ``_writer``) on native paths; the rest (atomic writes, copies, globbing) is shared.
    """

    def native(self, path: str) -> str:
        """The path inside this filesystem (no scheme/authority), made absolute."""
        raise NotImplementedError

    def url(self, native: str) -> str:
        """The full URL of a native path."""
        raise NotImplementedError

    # -- primitives ----------------------------------------------------------------------------

    def _stat(self, native: str) -> Optional[FileStatus]:
        raise NotImplementedError

    def _scandir(self, native: str) -> List[FileStatus]:
        raise NotImplementedError

    def _mkdirs(self, native: str) -> None:
        raise NotImplementedError

    def _delete(self, native: str, recursive: bool) -> None:
        raise NotImplementedError

    def _rename(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def _chmod(self, native: str, mode: int) -> None:
        raise NotImplementedError

    def _reader(self, native: str) -> IO[bytes]:
        raise NotImplementedError

    def _writer(self, native: str) -> IO[bytes]:
        """A new file (error if it exists); written data is complete once ``close()`` returns."""
        raise NotImplementedError

    # -- queries -------------------------------------------------------------------------------

    def status(self, path: str) -> FileStatus:
        """Status of ``path``; FileSystemError(reason="not_found") when it is missing."""
        native = self.native(path)
        with _translated("get the status of", self.url(native), self):
            found = self._stat(native)
        if found is None:
            raise _error("not_found", f"could not get the status of {self.url(native)}: "
                         "no such file or directory")
        return found

    def exists(self, path: str) -> bool:
        native = self.native(path)
        with _translated("check", self.url(native), self):
            return self._stat(native) is not None

    def isdir(self, path: str) -> bool:
        native = self.native(path)
        with _translated("check", self.url(native), self):
            found = self._stat(native)
        return bool(found and found.is_dir)

    def scandir(self, path: str) -> List[FileStatus]:
        """Status of every entry of the directory ``path``, sorted by name."""
        native = self.native(path)
        with _translated("list", self.url(native), self):
            return sorted(self._scandir(native), key=lambda s: s.name)

    def listdir(self, path: str) -> List[str]:
        """Names of the entries of the directory ``path``, sorted."""
        return [entry.name for entry in self.scandir(path)]

    def walk(self, path: str) -> Iterator[Tuple[str, List[str], List[str]]]:
        """Like :func:`os.walk`, top-down, with paths relative to ``path`` ("" for itself)."""
        for rel, dirs, files in self.walk_status(path):
            yield rel, dirs, [f.name for f in files]

    def walk_status(self, path: str) -> Iterator[Tuple[str, List[str], List[FileStatus]]]:
        """:meth:`walk` with each file's :class:`FileStatus` (its size...) instead of its name;
        ``dirs`` may be pruned in place, as with :func:`os.walk`."""
        todo = [""]
        while todo:
            rel = todo.pop(0)
            entries = self.scandir(join(path, rel) if rel else path)
            dirs = [e.name for e in entries if e.is_dir]
            yield rel, dirs, [e for e in entries if not e.is_dir]
            todo[0:0] = [posixpath.join(rel, d) if rel else d for d in dirs]

    def glob(self, pattern: str) -> List[str]:
        """URLs matching a shell pattern (``*``, ``?``, ``[..]`` per path component), sorted.

        As in a shell, wildcards do not match names starting with a dot.
        """
        native = self.native(pattern)
        matches = ["/"]
        for part in [p for p in native.split("/") if p]:
            found = []
            for base in matches:
                if not any(c in part for c in "*?["):
                    candidate = posixpath.join(base, part)
                    with _translated("check", self.url(candidate), self):
                        if self._stat(candidate) is not None:
                            found.append(candidate)
                    continue
                with _translated("list", self.url(base), self):
                    entries = self._scandir(base) if self._is_dir(base) else []
                found += [posixpath.join(base, e.name) for e in entries
                          if fnmatchcase(e.name, part)
                          and (part.startswith(".") or not e.name.startswith("."))]
            matches = found
        return sorted(self.url(m) for m in matches)

    def _is_dir(self, native: str) -> bool:
        found = self._stat(native)
        return bool(found and found.is_dir)

    # -- changes -------------------------------------------------------------------------------

    def mkdirs(self, path: str) -> None:
        """Create ``path`` and its parents; fine if it already is a directory."""
        native = self.native(path)
        with _translated("create directory", self.url(native), self):
            self._mkdirs(native)

    def delete(self, path: str, recursive: bool = False, missing_ok: bool = False) -> None:
        """Delete a file, or a directory (non-empty ones only with ``recursive``)."""
        native = self.native(path)
        with _translated("delete", self.url(native), self):
            if self._stat(native) is None:
                if missing_ok:
                    return
                raise FileNotFoundError(native)
            self._delete(native, recursive)

    def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits of ``path`` (e.g. ``0o700``)."""
        native = self.native(path)
        with _translated("change the permission of", self.url(native), self):
            self._chmod(native, mode)

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst`` on this filesystem; ``dst`` must not exist."""
        src_n, dst_n = self.native(src), self.native(dst)
        with _translated(f"rename {self.url(src_n)} to", self.url(dst_n), self):
            if self._stat(src_n) is None:
                raise FileNotFoundError(src_n)
            if self._stat(dst_n) is not None:
                raise FileExistsError(dst_n)
            self._mkdirs(posixpath.dirname(dst_n))
            self._rename(src_n, dst_n)

    # -- atomic writes -------------------------------------------------------------------------

    def _prepare_target(self, native: str, overwrite: bool) -> str:
        """Check ``native`` may be written; return a fresh hidden temporary sibling of it."""
        with _translated("write", self.url(native), self):
            if not overwrite and self._stat(native) is not None:
                raise FileExistsError(native)
            parent, name = posixpath.split(native.rstrip("/"))
            self._mkdirs(parent)
        return posixpath.join(parent, f".{name}._tmp-{uuid.uuid4().hex[:12]}")

    def _discard(self, native: str) -> None:
        """Best-effort removal of a temporary path (the original error matters more)."""
        try:
            if self._stat(native) is not None:
                self._delete(native, recursive=True)
        except Exception:
            pass

    def _commit(self, tmp: str, native: str, overwrite: bool) -> None:
        """Rename the finished ``tmp`` to ``native``; with ``overwrite``, replace what is there.

        The old entry is renamed aside, the new one renamed in, then the old one deleted; if
        the second rename fails the old entry is put back.
        """
        with _translated("write", self.url(native), self):
            try:
                if self._stat(native) is None:
                    self._rename(tmp, native)
                    return
                if not overwrite:
                    raise FileExistsError(native)
                parent, name = posixpath.split(native.rstrip("/"))
                old = posixpath.join(parent, f".{name}._old-{uuid.uuid4().hex[:12]}")
                self._rename(native, old)
                try:
                    self._rename(tmp, native)
                except BaseException:
                    self._rename(old, native)
                    raise
            except BaseException:
                self._discard(tmp)
                raise
            self._discard(old)

    @contextmanager
    def open(self, path: str, mode: str = "rb", overwrite: bool = False,
             encoding: str = "utf-8") -> Iterator[IO]:
        """Open for streaming read (``"rb"``, ``"r"``) or atomic write (``"wb"``, ``"w"``).

        A written file appears at ``path`` only when the ``with`` block ends without error;
        existing files are replaced only with ``overwrite=True``.
        """
        if mode not in ("rb", "r", "wb", "w"):
            raise ValueError(f"mode must be 'rb', 'r', 'wb' or 'w', not {mode!r}")
        native = self.native(path)
        if mode.startswith("r"):
            with _translated("open for reading", self.url(native), self):
                if self._is_dir(native):
                    raise IsADirectoryError(native)
                raw = self._reader(native)
            with raw:
                yield io.TextIOWrapper(raw, encoding=encoding) if mode == "r" else raw
            return
        tmp = self._prepare_target(native, overwrite)
        with _translated("write", self.url(native), self):
            raw = self._writer(tmp)
        stream = io.TextIOWrapper(raw, encoding=encoding) if mode == "w" else raw
        try:
            yield stream
        except BaseException:
            try:
                stream.close()
            except Exception:
                pass  # the caller's exception is the one that matters
            self._discard(tmp)
            raise
        try:
            with _translated("write", self.url(native), self):
                stream.close()  # for HDFS: waits until the DataNode has every byte
        except BaseException:
            self._discard(tmp)
            raise
        self._commit(tmp, native, overwrite)

    def write(self, path: str, data: Data, overwrite: bool = False) -> None:
        """Atomically write bytes, text, a binary file object or an iterable of byte chunks."""
        with self.open(path, "wb", overwrite=overwrite) as out:
            if isinstance(data, str):
                data = data.encode()
            if isinstance(data, (bytes, bytearray, memoryview)):
                out.write(data)
            elif hasattr(data, "read"):
                shutil.copyfileobj(data, out, CHUNK)
            else:
                for chunk in data:
                    out.write(chunk)

    def read_bytes(self, path: str) -> bytes:
        with self.open(path, "rb") as f:
            return f.read()

    # -- copies between filesystems ------------------------------------------------------------

    def upload(self, local_path: str, path: str, overwrite: bool = False,
               n_threads: int = 4) -> None:
        """Copy a local file or directory tree to ``path`` on this filesystem (atomically)."""
        _copy(LOCAL, local_path, self, path, overwrite, n_threads)

    def download(self, path: str, local_path: str, overwrite: bool = False,
                 n_threads: int = 4) -> None:
        """Copy a file or directory tree at ``path`` to the local ``local_path`` (atomically)."""
        _copy(self, path, LOCAL, local_path, overwrite, n_threads)

    @contextmanager
    def atomic_output(self, path: str, overwrite: bool = False) -> Iterator[str]:
        """Yield a local path to write a file or directory to; it becomes ``path`` on success.

        On an exception nothing is left behind and ``path`` is untouched.
        """
        native = self.native(path)
        self._prepare_target(native, overwrite)  # fail before any work is done
        with tempfile.TemporaryDirectory(prefix="tfspark-stage-") as stage:
            local = os.path.join(stage, posixpath.basename(native.rstrip("/")) or "output")
            yield local
            if not os.path.lexists(local):
                raise _error("io", f"could not write {self.url(native)}: nothing was written "
                             f"to the staging path {local}")
            self.upload(local, path, overwrite=overwrite)


def _copy(src_fs: FileSystem, src: str, dst_fs: FileSystem, dst: str, overwrite: bool,
          n_threads: int) -> None:
    """Copy a file or tree into a temporary sibling of ``dst``, then rename it into place."""
    src_n, dst_n = src_fs.native(src), dst_fs.native(dst)
    top = src_fs.status(src)
    tmp = dst_fs._prepare_target(dst_n, overwrite)

    def copy_file(rel: str) -> None:
        source = posixpath.join(src_n, rel) if rel else src_n
        with src_fs._reader(source) as reader:
            writer = dst_fs._writer(posixpath.join(tmp, rel) if rel else tmp)
            try:
                shutil.copyfileobj(reader, writer, CHUNK)
            finally:
                writer.close()

    with _translated(f"copy {src_fs.url(src_n)} to", dst_fs.url(dst_n),
                     dst_fs if isinstance(dst_fs, HdfsFileSystem) else src_fs):
        try:
            if top.is_dir:
                files = []
                for rel, _, names in src_fs.walk(src):
                    dst_fs._mkdirs(posixpath.join(tmp, rel) if rel else tmp)
                    files += [posixpath.join(rel, name) for name in names]
                with ThreadPoolExecutor(max(1, n_threads)) as pool:
                    list(pool.map(copy_file, files))
            else:
                copy_file("")
        except BaseException:
            dst_fs._discard(tmp)
            raise
    dst_fs._commit(tmp, dst_n, overwrite)


class LocalFileSystem(FileSystem):
    """Plain paths and ``file://`` URLs."""

    def native(self, path: str) -> str:
        scheme, authority, native = split_url(path)
        if scheme not in ("", "file") or authority not in ("", "localhost"):
            raise _error("unsupported", f"{path!r} is not a local path")
        return os.path.abspath(os.path.expanduser(native))

    def url(self, native: str) -> str:
        return "file://" + native

    def _stat(self, native: str) -> Optional[FileStatus]:
        try:
            st = os.stat(native)
        except FileNotFoundError:
            return None
        return FileStatus(name=os.path.basename(native), path=self.url(native),
                          is_dir=stat_mod.S_ISDIR(st.st_mode), size=st.st_size,
                          modified=st.st_mtime, owner=_user_name(st.st_uid),
                          group=_group_name(st.st_gid),
                          permission=format(stat_mod.S_IMODE(st.st_mode), "o"))

    def _scandir(self, native: str) -> List[FileStatus]:
        return [s for s in (self._stat(os.path.join(native, name))
                            for name in os.listdir(native)) if s is not None]

    def _mkdirs(self, native: str) -> None:
        os.makedirs(native, exist_ok=True)

    def _delete(self, native: str, recursive: bool) -> None:
        if os.path.isdir(native) and not os.path.islink(native):
            shutil.rmtree(native) if recursive else os.rmdir(native)
        else:
            os.remove(native)

    def _rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def _chmod(self, native: str, mode: int) -> None:
        os.chmod(native, mode)

    def _reader(self, native: str) -> IO[bytes]:
        return io.open(native, "rb")  # io.open: this module's open() is the public one

    def _writer(self, native: str) -> IO[bytes]:
        return io.open(native, "xb")

    @contextmanager
    def atomic_output(self, path: str, overwrite: bool = False) -> Iterator[str]:
        """Yield a hidden sibling path to write to; it is renamed to ``path`` on success."""
        native = self.native(path)
        tmp = self._prepare_target(native, overwrite)
        try:
            yield tmp
        except BaseException:
            self._discard(tmp)
            raise
        if not os.path.lexists(tmp):
            raise _error("io", f"could not write {self.url(native)}: nothing was written to "
                         f"the temporary path {tmp}")
        self._commit(tmp, native, overwrite)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class _HdfsWriter(io.RawIOBase):
    """Writable stream to a new HDFS file.

    A sender thread runs HdfsCLI's ``client.write`` over a generator fed from a small bounded
    queue, so memory stays at a few chunks however large the file.  Errors of the sender
    (permission, DataNode failure) surface at the next ``write()`` or at ``close()``, which
    waits until HDFS has the whole file.
    """

    def __init__(self, client, native: str, queue_size: int = 8):
        super().__init__()
        self._queue: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=queue_size)
        self._error: Optional[BaseException] = None
        self._sender = threading.Thread(target=self._send, args=(client, native),
                                        name=f"hdfs-write {native}", daemon=True)
        self._sender.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            yield chunk

    def _send(self, client, native: str) -> None:
        try:
            client.write(native, data=self._chunks(), overwrite=False)
        except BaseException as e:  # handed to the writing thread
            self._error = e

    def _put(self, item: Optional[bytes]) -> None:
        while True:
            if not self._sender.is_alive():
                if self._error is not None:
                    raise self._error
                return
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self._error is not None:
            raise self._error
        self._put(bytes(data))
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._put(None)
        self._sender.join()
        if self._error is not None:
            raise self._error


class HdfsFileSystem(FileSystem):
    """``hdfs://`` and ``webhdfs://`` paths of one NameNode (or HA nameservice), via WebHDFS."""

    def __init__(self, scheme: str, authority: str, http_urls: List[str], user: str,
                 kerberos: bool = False, connect_timeout: float = 5.0,
                 read_timeout: float = 120.0):
        self.scheme, self.authority, self.http_urls, self.user = (scheme, authority,
                                                                  http_urls, user)
        from hdfs import InsecureClient
        options = dict(timeout=(connect_timeout, read_timeout))
        if kerberos:
            try:
                from hdfs.ext.kerberos import KerberosClient
            except ImportError as e:
                raise _error("unsupported", f"{scheme}://{authority} uses Kerberos, which "
                             "needs requests-kerberos (pip install 'tfspark[kerberos]')") from e
            self.client = KerberosClient(";".join(http_urls), **options)
        else:
            self.client = InsecureClient(";".join(http_urls), user=user, **options)

    def native(self, path: str) -> str:
        scheme, authority, native = split_url(path)
        if scheme and (scheme != self.scheme or authority not in ("", self.authority)):
            raise _error("unsupported", f"{path!r} is not on {self.scheme}://{self.authority}")
        if not native.startswith("/"):
            native = posixpath.join(f"/user/{self.user}", native)
        return posixpath.normpath(native)

    def url(self, native: str) -> str:
        return f"{self.scheme}://{self.authority}{native}"

    def _to_status(self, native: str, st: dict) -> FileStatus:
        return FileStatus(name=posixpath.basename(native) or "/", path=self.url(native),
                          is_dir=st["type"] == "DIRECTORY", size=st["length"],
                          modified=st["modificationTime"] / 1000.0, owner=st["owner"],
                          group=st["group"], permission=st["permission"])

    def _stat(self, native: str) -> Optional[FileStatus]:
        from hdfs.util import HdfsError
        try:
            st = self.client.status(native)
        except HdfsError as e:
            if e.exception == "FileNotFoundException":
                return None
            raise
        return self._to_status(native, st)

    def _scandir(self, native: str) -> List[FileStatus]:
        return [self._to_status(posixpath.join(native, name), st)
                for name, st in self.client.list(native, status=True)]

    def _mkdirs(self, native: str) -> None:
        self.client.makedirs(native)

    def _delete(self, native: str, recursive: bool) -> None:
        if not self.client.delete(native, recursive=recursive):
            raise FileNotFoundError(native)

    def _rename(self, src: str, dst: str) -> None:
        self.client.rename(src, dst)

    def _chmod(self, native: str, mode: int) -> None:
        self.client.set_permission(native, format(mode, "o"))

    def _reader(self, native: str) -> IO[bytes]:
        # HdfsCLI's read() only works as a `with` block; its OPEN request gives a plain
        # streaming requests.Response that can outlive this call
        response = self.client._open(native)
        return io.BufferedReader(_ClosingRaw(response), CHUNK)

    def _writer(self, native: str) -> IO[bytes]:
        return io.BufferedWriter(_HdfsWriter(self.client, native), CHUNK)  # few big chunks


class _ClosingRaw(io.RawIOBase):
    """Raw stream of a streaming HTTP response that closes the response with it."""

    def __init__(self, response):
        super().__init__()
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._response.raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._response.close()


LOCAL = LocalFileSystem()
_cache: Dict[tuple, HdfsFileSystem] = {}
_cache_lock = threading.Lock()


def get_filesystem(path: str, user: Optional[str] = None) -> FileSystem:
    """The filesystem of ``path``: :data:`LOCAL` or an :class:`HdfsFileSystem`.

    HDFS filesystems are cached per (scheme, authority, user, $HADOOP_CONF_DIR).  ``user``
    defaults to ``$HADOOP_USER_NAME`` or the OS user.
    """
    scheme = _check_scheme(path)
    if scheme in ("", "file"):
        return LOCAL
    _, authority, _ = split_url(path)
    conf = hadoop_conf()
    if not authority:
        default_scheme, authority, _ = split_url(conf.get("fs.defaultFS", ""))
        if default_scheme != scheme or not authority:
            raise _error("unsupported", f"{path!r} names no NameNode and fs.defaultFS in "
                         f"HADOOP_CONF_DIR={os.environ.get('HADOOP_CONF_DIR')} is not a "
                         f"{scheme}:// URL")
    user = user or current_user()
    key = (scheme, authority, user, os.environ.get("HADOOP_CONF_DIR"))
    with _cache_lock:
        if key not in _cache:
            urls = ([f"http://{authority}"] if scheme == "webhdfs"
                    else namenode_http_urls(authority, conf))
            kerberos = conf.get("hadoop.security.authentication", "simple") == "kerberos"
            _cache[key] = HdfsFileSystem(scheme, authority, urls, user, kerberos=kerberos)
        return _cache[key]


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
