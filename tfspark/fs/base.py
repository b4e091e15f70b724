"""What every filesystem offers (:class:`FileSystem`), built on a few primitives its subclasses
implement: status, listing, globbing, atomic writes and copies between filesystems."""
from __future__ import annotations

import io
import os
import posixpath
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import IO, Iterable, Iterator, List, Optional, Tuple, Union

from tfspark.fs.errors import error, translated
from tfspark.fs.paths import join

CHUNK = 1 << 20  # bytes per read or write when streaming a file

Data = Union[bytes, str, IO, Iterable[bytes]]


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

    #: Whether this filesystem is reached over the network (its errors matter most in a copy).
    remote = False

    def native(self, path: str) -> str:
        """The path inside this filesystem (no scheme/authority), made absolute."""
        raise NotImplementedError

    def url(self, native: str) -> str:
        """The full URL of a native path."""
        raise NotImplementedError

    def unreachable(self, exc: BaseException) -> Optional[str]:
        """What could not be reached, if ``exc`` is a failure to connect; else None."""
        return None

    def refused_credentials(self, exc: BaseException) -> Optional[str]:
        """Which credentials the server refused and why, if ``exc`` says so; else None."""
        return None

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
        with translated("get the status of", self.url(native), self):
            found = self._stat(native)
        if found is None:
            raise error("not_found", f"could not get the status of {self.url(native)}: "
                        "no such file or directory")
        return found

    def exists(self, path: str) -> bool:
        native = self.native(path)
        with translated("check", self.url(native), self):
            return self._stat(native) is not None

    def isdir(self, path: str) -> bool:
        native = self.native(path)
        with translated("check", self.url(native), self):
            found = self._stat(native)
        return bool(found and found.is_dir)

    def scandir(self, path: str) -> List[FileStatus]:
        """Status of every entry of the directory ``path``, sorted by name."""
        native = self.native(path)
        with translated("list", self.url(native), self):
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
                    with translated("check", self.url(candidate), self):
                        if self._stat(candidate) is not None:
                            found.append(candidate)
                    continue
                with translated("list", self.url(base), self):
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
        with translated("create directory", self.url(native), self):
            self._mkdirs(native)

    def delete(self, path: str, recursive: bool = False, missing_ok: bool = False) -> None:
        """Delete a file, or a directory (non-empty ones only with ``recursive``)."""
        native = self.native(path)
        with translated("delete", self.url(native), self):
            if self._stat(native) is None:
                if missing_ok:
                    return
                raise FileNotFoundError(native)
            self._delete(native, recursive)

    def chmod(self, path: str, mode: int) -> None:
        """Set the permission bits of ``path`` (e.g. ``0o700``)."""
        native = self.native(path)
        with translated("change the permission of", self.url(native), self):
            self._chmod(native, mode)

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst`` on this filesystem; ``dst`` must not exist."""
        src_n, dst_n = self.native(src), self.native(dst)
        with translated(f"rename {self.url(src_n)} to", self.url(dst_n), self):
            if self._stat(src_n) is None:
                raise FileNotFoundError(src_n)
            if self._stat(dst_n) is not None:
                raise FileExistsError(dst_n)
            self._mkdirs(posixpath.dirname(dst_n))
            self._rename(src_n, dst_n)

    # -- atomic writes -------------------------------------------------------------------------

    def _prepare_target(self, native: str, overwrite: bool) -> str:
        """Check ``native`` may be written; return a fresh hidden temporary sibling of it."""
        with translated("write", self.url(native), self):
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
        with translated("write", self.url(native), self):
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
            raise error("unsupported", f"could not open {path}: mode must be 'rb', 'r', 'wb' "
                        f"or 'w', not {mode!r}")
        native = self.native(path)
        if mode.startswith("r"):
            with translated("open for reading", self.url(native), self):
                if self._is_dir(native):
                    raise IsADirectoryError(native)
                raw = self._reader(native)
            with raw:
                yield io.TextIOWrapper(raw, encoding=encoding) if mode == "r" else raw
            return
        tmp = self._prepare_target(native, overwrite)
        with translated("write", self.url(native), self):
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
            with translated("write", self.url(native), self):
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
        from tfspark.fs.local import LOCAL
        _copy(LOCAL, local_path, self, path, overwrite, n_threads)

    def download(self, path: str, local_path: str, overwrite: bool = False,
                 n_threads: int = 4) -> None:
        """Copy a file or directory tree at ``path`` to the local ``local_path`` (atomically)."""
        from tfspark.fs.local import LOCAL
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
                raise error("io", f"could not write {self.url(native)}: nothing was written "
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

    with translated(f"copy {src_fs.url(src_n)} to", dst_fs.url(dst_n),
                    dst_fs if dst_fs.remote else src_fs):
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
