"""Ship this Python environment and Spark's jars to YARN once, and reuse them in every job.

    python -m tfspark.pack --upload hdfs:///user/$USER/tfspark          # or: tfspark-pack ...
    spark-submit --properties-file tfspark-yarn.conf --deploy-mode cluster job.py

1. **Packs the running virtual environment** (``sys.prefix``) into ``env.tar.gz``:

   * tfspark goes in as a real package (an editable install -- ``pip install -e``, ``make`` --
     is only a pointer to a source checkout that other nodes do not have);
   * pyspark is left out (``--with-pyspark`` keeps it): on YARN, Spark puts its own
     ``pyspark.zip`` and py4j on every container's ``PYTHONPATH``, and its jars come from
     ``spark.yarn.archive``;
   * this interpreter's bytecode (``__pycache__/*.cpython-311.pyc`` on 3.11) goes in: executors
     often cannot write into YARN's cache of the archive (containers run as the submitting
     user), and every process would compile what it imports again (TensorFlow: ~9 s here);
   * what only compilers and type checkers read is left out: TensorFlow's C++ headers
     (``tensorflow/include``, for custom ops), C/C++ headers, Cython declarations and type
     stubs (``.pyi``; a third of a Jupyter virtualenv's files).

   The archive is kept in ``--cache-dir`` (``~/.cache/tfspark/pack``; ``--no-cache``: not) and
   reused while no file of the environment has changed (names, sizes, modes, times), so
   packing again costs a walk over the files, not a gigabyte's compression.

   Like any virtualenv, the archive needs the same base Python at the same path on every node
   (``home`` in ``pyvenv.cfg``); for a conda environment use ``conda-pack`` instead.
2. **Zips Spark's jars** (``$SPARK_HOME/jars``, pip's pyspark by default) into
   ``spark-jars.zip`` for ``spark.yarn.archive``.
3. **Uploads both** under the ``--upload`` folder on HDFS, readable by everyone so that
   NodeManagers cache them for every application (YARN's PUBLIC localization); a file whose
   SHA-256 matches the one already there is not uploaded again.
4. **Writes a spark-submit properties file** (``--conf-file``, default ``tfspark-yarn.conf``)
   that points the application at them: ``spark.yarn.archive``, ``spark.yarn.dist.archives``
   (``env.tar.gz#env``), ``spark.pyspark.python=./env/bin/python`` (the executors' Python, and
   the driver's in cluster mode; in client mode add ``--conf
   spark.pyspark.driver.python=$(which python)``), ``spark.dynamicAllocation.enabled=false``.
   Pass it with ``--properties-file`` (add ``--load-spark-defaults`` to keep
   ``spark-defaults.conf``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from tfspark import fs
from tfspark.errors import PackError

ENV_ARCHIVE, JARS_ARCHIVE, CONF_FILE = "env.tar.gz", "spark-jars.zip", "tfspark-yarn.conf"

#: Folders (relative to site-packages) that executors never need.
_NOT_SHIPPED = ("tensorflow/include",)
#: Files that only compilers and type checkers read, never a running program.
_BUILD_ONLY_SUFFIXES = (".h", ".hpp", ".pxd", ".pxi", ".pyx", ".pyi")


def site_packages() -> str:
    return sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix})["purelib"]


def pack_environment(output: str, with_pyspark: bool = False,
                     prefix: Optional[str] = None, cache_dir: Optional[str] = None
                     ) -> Dict[str, int]:
    """Write the virtualenv at ``prefix`` (default: this one) to ``output`` (.tar.gz), with
    tfspark as a real package. Returns ``{"files": n, "bytes": uncompressed size}``.

    With ``cache_dir``, the archive is kept there under a fingerprint of what goes in (every
    file's name, size, mode and modification time; bytecode aside, as it follows from the
    sources): packing an unchanged environment again copies it instead of compressing a
    gigabyte. Only the newest archive is kept."""
    prefix = os.path.abspath(prefix or sys.prefix)
    entries = _entries(prefix, with_pyspark)
    cached = None
    if cache_dir:
        cached = os.path.join(cache_dir, f"env-{_fingerprint(entries, with_pyspark)}.tar.gz")
        if os.path.exists(cached) and os.path.exists(cached + ".json"):
            _link_or_copy(cached, output)
            with open(cached + ".json") as f:
                return json.load(f)
    counts = {"files": 0, "bytes": 0}
    partial = f"{output}.partial"
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        for path, arcname in entries:
            tar.add(path, arcname=arcname, recursive=False)
            counts["files"] += 1
            counts["bytes"] += os.lstat(path).st_size
    os.replace(partial, output)
    if cached:
        _keep_in_cache(output, cached, counts)
    return counts


def _entries(prefix: str, with_pyspark: bool) -> List[Tuple[str, str]]:
    """(path, name in the archive) of everything env.tar.gz holds, in order."""
    if not os.path.exists(os.path.join(prefix, "pyvenv.cfg")):
        raise PackError(f"{prefix} is not a virtualenv (no pyvenv.cfg): run this with the "
                        "venv's python; for a conda environment use conda-pack")
    packages = site_packages() if prefix == os.path.abspath(sys.prefix) else None
    packages = os.path.relpath(packages or _find_site_packages(prefix), prefix)
    skip = _skipped(packages, with_pyspark)
    tfspark_source = os.path.dirname(os.path.abspath(__file__))
    bundled = os.path.join(prefix, packages, "tfspark")
    entries = list(_walk(prefix, "", skip))
    if os.path.abspath(tfspark_source) != os.path.abspath(bundled):  # editable install
        entries += _walk(tfspark_source, os.path.join(packages, "tfspark"), skip)
    return entries


def _fingerprint(entries: List[Tuple[str, str]], with_pyspark: bool) -> str:
    digest = hashlib.sha256(f"{sys.version} {with_pyspark}\n".encode())
    for path, arcname in entries:
        if "__pycache__" in arcname:
            continue
        info = os.lstat(path)
        digest.update(f"{arcname} {info.st_size} {info.st_mode} {info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)


def _keep_in_cache(archive: str, cached: str, counts: Dict[str, int]) -> None:
    """Keep ``archive`` as ``cached`` (and only it: older archives go); best effort."""
    folder = os.path.dirname(cached)
    try:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.startswith("env-"):
                os.remove(os.path.join(folder, name))
        partial = f"{cached}.partial"
        _link_or_copy(archive, partial)
        with open(f"{cached}.json", "w") as f:
            json.dump(counts, f)
        os.replace(partial, cached)
    except OSError as e:
        print(f"tfspark.pack: could not keep the archive in {folder}: {e}", flush=True)


def _find_site_packages(prefix: str) -> str:
    lib = os.path.join(prefix, "lib")
    for name in sorted(os.listdir(lib)) if os.path.isdir(lib) else []:
        candidate = os.path.join(lib, name, "site-packages")
        if name.startswith("python") and os.path.isdir(candidate):
            return candidate
    raise PackError(f"no lib/python*/site-packages under {prefix}")


def _skipped(packages: str, with_pyspark: bool) -> Callable[[str], bool]:
    """A predicate on paths relative to the prefix: True for what is not shipped."""
    dropped = [os.path.join(packages, p) for p in _NOT_SHIPPED]
    bytecode = f".{sys.implementation.cache_tag}."

    def skip(rel: str) -> bool:
        name = os.path.basename(rel)
        if rel in dropped or name.endswith(_BUILD_ONLY_SUFFIXES):
            return True
        if os.path.basename(os.path.dirname(rel)) == "__pycache__":
            return bytecode not in name  # another interpreter's cached bytecode
        if os.path.dirname(rel) == packages:
            if name.startswith("__editable__") and "tfspark" in name:
                return True  # the editable finder: tfspark itself is copied in
            if not with_pyspark and (name == "pyspark" or (name.startswith("pyspark-")
                                                          and name.endswith(".dist-info"))):
                return True
        return False

    return skip


def _walk(root: str, arc_root: str, skip: Callable[[str], bool]) -> Iterator[Tuple[str, str]]:
    """(path, name in the archive) of everything under ``root``, symlinks as links."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        kept = []
        for d in sorted(dirnames):
            rel = os.path.join(rel_dir, d)
            if skip(os.path.join(arc_root, rel)):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                filenames.append(d)  # os.walk lists links to folders as folders
            else:
                kept.append(d)
                yield os.path.join(dirpath, d), os.path.join(arc_root, rel)
        dirnames[:] = kept
        for f in sorted(filenames):
            rel = os.path.join(rel_dir, f)
            if not skip(os.path.join(arc_root, rel)):
                yield os.path.join(dirpath, f), os.path.join(arc_root, rel)


def spark_jars_dir() -> str:
    """The jars spark-submit uses: ``$SPARK_HOME/jars``, else pip's pyspark's."""
    home = os.environ.get("SPARK_HOME")
    if not home:
        import pyspark
        home = os.path.dirname(pyspark.__file__)
    jars = os.path.join(home, "jars")
    if not os.path.isdir(jars):
        raise PackError(f"no Spark jars at {jars} (set SPARK_HOME to your Spark installation)")
    return jars


def pack_spark_jars(output: str, jars: Optional[str] = None) -> int:
    """Zip (stored, uncompressed: jars are compressed already) the Spark jars at the archive's
    root, as ``spark.yarn.archive`` wants them. Returns the number of jars."""
    jars = jars or spark_jars_dir()
    names = sorted(n for n in os.listdir(jars) if n.endswith(".jar"))
    partial = f"{output}.partial"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in names:
            archive.write(os.path.join(jars, name), arcname=name)
    os.replace(partial, output)
    return len(names)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_once(local: str, url: str) -> bool:
    """Put ``local`` at ``url`` (world-readable) unless a file with the same SHA-256 is there
    already (its digest is kept beside it as ``<name>.sha256``). True if it was uploaded."""
    digest, digest_url = sha256(local), f"{url}.sha256"
    if fs.exists(url) and fs.exists(digest_url) and \
            fs.read_bytes(digest_url).decode().strip() == digest:
        return False
    fs.upload(local, url, overwrite=True)
    fs.write(digest_url, digest.encode(), overwrite=True)
    for path in (url, digest_url):
        fs.get_filesystem(path).chmod(path, 0o644)
    return True


def make_public(folder: str) -> None:
    """Let every user read ``folder`` and enter its ancestors: YARN localizes files PUBLIC --
    once per NodeManager for all applications -- only when all of that holds."""
    scheme, authority, path = fs.split_url(folder)
    filesystem = fs.get_filesystem(folder)
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), 0, -1):
        url = f"{scheme}://{authority}/" + "/".join(parts[:depth])
        mode = int(filesystem.status(url).permission, 8)
        if mode & 0o005 == 0o005:
            continue
        try:
            filesystem.chmod(url, mode | 0o005)
        except fs.FileSystemError:  # not ours (e.g. /user): YARN then caches them PRIVATE,
            return                  # once per NodeManager and user


def properties(env_url: str, jars_url: str) -> List[Tuple[str, str]]:
    """The spark-submit properties that make an application use the shipped archives."""
    return [
        ("spark.master", "yarn"),
        ("spark.yarn.archive", jars_url),
        ("spark.yarn.dist.archives", f"{env_url}#env"),
        ("spark.pyspark.python", "./env/bin/python"),
        ("spark.executorEnv.TF_USE_LEGACY_KERAS", "1"),
        ("spark.yarn.appMasterEnv.TF_USE_LEGACY_KERAS", "1"),
        ("spark.dynamicAllocation.enabled", "false"),
    ]


def write_conf(path: str, props: List[Tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in props) + 2
    lines = [f"# written by `python -m tfspark.pack` on {datetime.date.today()}: pass it to "
             "spark-submit --properties-file"]
    lines += [f"{key.ljust(width)}{value}" for key, value in props]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfspark.pack",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--upload", required=True, metavar="HDFS_DIR",
                        help="HDFS folder for env.tar.gz and spark-jars.zip (hdfs:///..., "
                             "hdfs://nn:port/... or relative to your HDFS home)")
    parser.add_argument("--conf-file", default=CONF_FILE,
                        help=f"spark-submit properties file to write (default {CONF_FILE})")
    parser.add_argument("--with-pyspark", action="store_true",
                        help="keep pip's pyspark (and its jars) in env.tar.gz")
    parser.add_argument("--workdir", default=None,
                        help="where the archives are built (default: a temporary folder)")
    parser.add_argument("--cache-dir", default=default_cache_dir(),
                        help="keep the environment's archive here, and reuse it while the "
                             "environment is unchanged (default %(default)s)")
    parser.add_argument("--no-cache", action="store_true",
                        help="always pack the environment anew, keep no archive")
    args = parser.parse_args(argv)

    target = fs.resolve(args.upload)
    if fs.split_url(target)[0] not in ("hdfs", "webhdfs"):
        raise SystemExit(f"--upload must be on HDFS, got {target} (is HADOOP_CONF_DIR set?)")
    with _build_dir(args.workdir) as workdir:
        urls = _build_and_upload(workdir, target, args.with_pyspark,
                                 None if args.no_cache else args.cache_dir)
    write_conf(args.conf_file, properties(urls[ENV_ARCHIVE], urls[JARS_ARCHIVE]))
    print(f"wrote {args.conf_file}: spark-submit --properties-file {args.conf_file} ...",
          flush=True)
    return 0


@contextlib.contextmanager
def _build_dir(given: Optional[str]) -> Iterator[str]:
    """Where the archives are built: ``given`` (kept), else a temporary folder removed after
    the upload (the environment's archive alone is about a gigabyte)."""
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="tfspark-pack-") as workdir:
        yield workdir


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfspark", "pack")


def _build_and_upload(workdir: str, target: str, with_pyspark: bool,
                      cache_dir: Optional[str] = None) -> Dict[str, str]:
    """Pack the environment and Spark's jars in ``workdir`` and upload both to ``target``;
    their URLs by archive name."""
    env_local, jars_local = os.path.join(workdir, ENV_ARCHIVE), os.path.join(workdir, JARS_ARCHIVE)

    started = time.monotonic()
    counts = pack_environment(env_local, with_pyspark=with_pyspark, cache_dir=cache_dir)
    print(f"packed {sys.prefix}: {counts['files']:,} files, {counts['bytes'] / 1e6:,.0f} MB -> "
          f"{env_local} ({os.path.getsize(env_local) / 1e6:,.0f} MB) in "
          f"{time.monotonic() - started:.0f}s", flush=True)
    started = time.monotonic()
    jars = pack_spark_jars(jars_local)
    print(f"zipped {jars} Spark jars -> {jars_local} ({os.path.getsize(jars_local) / 1e6:,.0f} "
          f"MB) in {time.monotonic() - started:.0f}s", flush=True)

    fs.mkdirs(target)
    make_public(target)
    urls = {}
    for local, name in ((env_local, ENV_ARCHIVE), (jars_local, JARS_ARCHIVE)):
        url = fs.join(target, name)
        started = time.monotonic()
        uploaded = upload_once(local, url)
        print(f"{'uploaded' if uploaded else 'unchanged, kept'} {url}"
              + (f" in {time.monotonic() - started:.0f}s" if uploaded else ""), flush=True)
        urls[name] = url
    return urls


if __name__ == "__main__":
    sys.exit(main())
