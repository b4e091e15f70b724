"""``hdfs://`` and ``webhdfs://`` paths, through WebHDFS with the ``hdfs`` package (HdfsCLI):
TensorFlow cannot open ``hdfs://`` without libhdfs, and tfspark does not need it."""
from __future__ import annotations

import io
import posixpath
import queue
import threading
from typing import IO, Iterator, List, Optional

from tfspark.fs.base import CHUNK, FileStatus, FileSystem
from tfspark.fs.credentials import DelegationAuth, describe, hdfs_token, owner_short_name
from tfspark.fs.errors import error, redact, token_refused
from tfspark.fs.paths import split_url


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
        from hdfs import Client, InsecureClient
        options = dict(timeout=(connect_timeout, read_timeout))
        self.kerberos = kerberos
        if kerberos:  # a delegation token on every request (see tfspark.fs.credentials)
            import requests
            session = requests.Session()
            session.auth = DelegationAuth(authority, http_urls)
            self.client = Client(";".join(http_urls), session=session, **options)
        else:
            self.client = InsecureClient(";".join(http_urls), user=user, **options)

    @property
    def home(self) -> str:
        """Where relative paths are: ``/user/<the HDFS user>``; under Kerberos that is the
        token's owner (a principal's short name), not the OS user."""
        if self.kerberos:
            token = hdfs_token(self.authority)
            owner = owner_short_name(token) if token is not None else None
            if owner:
                return f"/user/{owner}"
        return f"/user/{self.user}"

    remote = True

    def unreachable(self, exc: BaseException) -> Optional[str]:
        """Which server a requests connection error failed to reach: the NameNode or a
        DataNode (None for other errors)."""
        import requests
        if not isinstance(exc, (requests.exceptions.ConnectionError,
                                requests.exceptions.Timeout)):
            return None
        failed = getattr(getattr(exc, "request", None), "url", None) or ""
        if failed and not any(failed.startswith(u) for u in self.http_urls):
            return (f"cannot reach the DataNode at {failed.split('/webhdfs')[0]} "
                    f"({type(exc).__name__})")
        return (f"cannot reach the NameNode WebHDFS at {' or '.join(self.http_urls)} "
                f"({type(exc).__name__})")

    def refused_credentials(self, exc: BaseException) -> Optional[str]:
        """On a Kerberized HDFS, a 401/403 about the token: which token (service, owner,
        dates; never the token) and why, in place of the NameNode's raw answer."""
        if not self.kerberos:
            return None
        text = redact(str(exc))
        if not (token_refused(exc) or "Authentication failure" in text):
            return None
        token = hdfs_token(self.authority)
        why = ("has expired (it was not renewed within its renew interval, or passed its max "
               "lifetime)" if "expired" in text else
               "is unknown to the NameNode (cancelled, or issued by another NameNode)"
               if "can't be found" in text else "was not accepted")
        return (f"{describe(token)} {why}; NameNode {self.authority} refused it. While a TF "
                "cluster runs the driver renews and re-issues its nodes' tokens; elsewhere, get "
                "a fresh one (kinit, or spark-submit --principal/--keytab)")

    def native(self, path: str) -> str:
        scheme, authority, native = split_url(path)
        if scheme and (scheme != self.scheme or authority not in ("", self.authority)):
            raise error("unsupported", f"{path!r} is not on {self.scheme}://{self.authority}")
        if not native.startswith("/"):
            native = posixpath.join(self.home, native)
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
