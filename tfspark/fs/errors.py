"""How a failed file operation reaches the caller: one :class:`FileSystemError` that names the
path and the problem, its ``reason`` one of ``not_found``, ``permission``, ``exists``,
``unreachable``, ``unsupported``, ``io``."""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional, Tuple

from tfspark.errors import FileSystemError

if TYPE_CHECKING:
    from tfspark.fs.base import FileSystem


_TOKEN_IN_URL = re.compile(r"(delegation=)[^&\s'\"]+")


def redact(text: str) -> str:
    """``text`` with any ``delegation=<token>`` of a URL in it replaced by ``delegation=***``."""
    return _TOKEN_IN_URL.sub(r"\1***", text)


def error(reason: str, message: str) -> FileSystemError:
    """A :class:`FileSystemError` with its ``reason``."""
    err = FileSystemError(message)
    err.reason = reason
    return err


def classify(exc: BaseException) -> Tuple[str, str]:
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
    text = redact(str(exc))
    if token_refused(exc):
        return "permission", (f"{remote or 'the NameNode'} refused the HDFS delegation token "
                              f"({_first_line(text)})")
    if remote == "FileNotFoundException" or "does not exist" in text:
        return "not_found", "no such file or directory"
    if remote in ("AccessControlException", "SecurityException") or "Permission denied" in text:
        return "permission", f"permission denied ({_first_line(text) or remote})"
    if remote == "FileAlreadyExistsException" or "already exists" in text:
        return "exists", "already exists"
    if "Authentication failure" in text:
        return "permission", "authentication failed (Kerberos ticket or user name rejected)"
    return "io", f"{type(exc).__name__}: {text}"


def token_refused(exc: BaseException) -> bool:
    """Whether a WebHDFS failure is the NameNode refusing the delegation token (expired,
    cancelled, unknown), as HdfsCLI reports it."""
    text = str(exc)
    return (getattr(exc, "exception", None) == "InvalidToken" or "token" in text.lower() and (
        "expired" in text or "can't be found" in text))


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


@contextmanager
def translated(action: str, url: str, fs: Optional["FileSystem"] = None) -> Iterator[None]:
    """Re-raise any failure inside as ``FileSystemError("could not <action> <url>: ...")``."""
    try:
        yield
    except FileSystemError:
        raise
    except Exception as e:
        unreachable = fs.unreachable(e) if fs is not None else None
        refused = fs.refused_credentials(e) if fs is not None else None
        if unreachable or refused:
            reason, problem = ("unreachable" if unreachable else "permission",
                               unreachable or refused)
        else:
            reason, problem = classify(e)
        # a request URL with a token in it stays out of every traceback
        raise error(reason, f"could not {action} {url}: {problem}") from (
            None if "delegation=" in str(e) else e)
