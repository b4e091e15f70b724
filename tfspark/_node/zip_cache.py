"""Zipped packages on an executor's Python path, unpacked once so node processes import them fast.

Spark puts ``pyspark.zip`` (and py4j's zip) first on its Python workers' path. Python imports
from a zip by compiling every module's source again, and never caches the bytecode: a fresh
node process spent about 0.7 s importing ``pyspark`` (which unpickling ``main_fun`` needs) on
this project's machine, against 0.08 s with cached bytecode. A node's task therefore gives its
process the unpacked copy of each zip instead: unpacked once per zip (keyed by its path, size
and modification time) into a folder private to this user under the executor's local dirs, where
the first process's imports leave the bytecode for the next ones (:func:`import_caching_bytecode`,
also where ``PYTHONDONTWRITEBYTECODE`` is set: it writes only into that private folder).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from typing import List, Optional, Sequence

from tfspark._node.private_dir import executor_local_dir

#: The unpacked copies live in ``<executor local dir>/tfspark-unzipped-<uid>/``.
CACHE_PREFIX = "tfspark-unzipped-"

#: Bigger zips stay zipped (unpacking one would delay the node's start more than it saves):
#: pyspark.zip is 4 MB; a ``--py-files`` bundle of dependencies can be far bigger.
MAX_ZIP_BYTES = 64 << 20


def importable_path(entries: Sequence[str], cache_root: Optional[str] = None) -> List[str]:
    """``entries`` (a ``sys.path``) with each zip file replaced by its unpacked copy, where one
    can be made (else the zip stays)."""
    root = cache_root or os.path.join(executor_local_dir() or tempfile.gettempdir(),
                                      f"{CACHE_PREFIX}{os.getuid()}")
    return [unpacked(entry, root) for entry in entries]


def unpacked(entry: str, cache_root: str) -> str:
    """The folder holding the files of the zip ``entry`` (unpacked under ``cache_root`` on first
    use), or ``entry`` itself if it is not a zip file, is bigger than :data:`MAX_ZIP_BYTES` or
    cannot be unpacked."""
    if not entry.endswith(".zip") or not os.path.isfile(entry):
        return entry
    try:
        info = os.stat(entry)
        if info.st_size > MAX_ZIP_BYTES:
            return entry
        key = hashlib.sha256(f"{os.path.abspath(entry)}\0{info.st_size}\0{info.st_mtime_ns}"
                             .encode()).hexdigest()[:16]
        target = os.path.join(cache_root, f"{os.path.basename(entry)[:-4]}-{key}")
        if not _is_private_dir(cache_root):
            return entry
        if not os.path.isdir(target):
            _unpack(entry, cache_root, target)
        return target
    except (OSError, zipfile.BadZipFile):
        return entry


def _is_private_dir(path: str) -> bool:
    """Make ``path`` (0700) if missing; True if it is a folder owned by us that no one else can
    write (a folder someone else controls could hand our nodes code of theirs)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _unpack(zip_path: str, cache_root: str, target: str) -> None:
    """Unpack into a fresh folder, then rename it to ``target`` (another task may win)."""
    staging = tempfile.mkdtemp(prefix=".unpacking-", dir=cache_root)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)  # member names cannot leave staging (zipfile strips ..)
        os.rename(staging, target)
    except OSError:
        if not os.path.isdir(target):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def import_caching_bytecode(module: str) -> None:
    """Import ``module``; if it comes from an unpacked copy here, write its bytecode there even
    where ``PYTHONDONTWRITEBYTECODE`` is set (the folder is ours: nothing else is written to)."""
    spec = importlib.util.find_spec(module.split(".")[0])
    ours = spec is not None and CACHE_PREFIX in (spec.origin or "")
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = saved and not ours
    try:
        importlib.import_module(module)
    finally:
        sys.dont_write_bytecode = saved
