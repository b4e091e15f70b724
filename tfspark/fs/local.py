"""Plain local paths and ``file://`` URLs."""
from __future__ import annotations

import grp
import io
import os
import pwd
import shutil
import stat as stat_mod
from contextlib import contextmanager
from typing import IO, Iterator, List, Optional

from tfspark.fs.base import FileStatus, FileSystem
from tfspark.fs.errors import error
from tfspark.fs.paths import split_url


class LocalFileSystem(FileSystem):
    """Plain paths and ``file://`` URLs."""

    def native(self, path: str) -> str:
        scheme, authority, native = split_url(path)
        if scheme not in ("", "file") or authority not in ("", "localhost"):
            raise error("unsupported", f"{path!r} is not a local path")
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
            raise error("io", f"could not write {self.url(native)}: nothing was written to "
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


LOCAL = LocalFileSystem()


def scratch_dir(prefix: str) -> str:
    """A new local temporary folder: in a TF node's process, under its task's private directory
    (removed with it, however the node ends); elsewhere in the system's temporary directory
    (the caller removes it)."""
    import tempfile
    from tfspark.constants import NODE_SCRATCH_ENV
    base = os.environ.get(NODE_SCRATCH_ENV) or None
    if base:
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=base)
