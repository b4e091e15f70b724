"""python -m tfspark.pack: what goes into env.tar.gz and spark-jars.zip (no Spark, no HDFS)."""
import os
import sys
import tarfile
import zipfile

import pytest

from tfspark import pack

TAG = sys.implementation.cache_tag

def _fake_venv(root):
    site = root / "lib" / "python3.11" / "site-packages"
    for rel in ("numpy/__init__.py", "pyspark/__init__.py", "pyspark-4.3.0.dist-info/METADATA",
                "tensorflow/include/big.h", "tensorflow/__init__.py",
                "tensorflow/x.py", f"tensorflow/__pycache__/x.{TAG}.pyc",
                "tensorflow/__pycache__/x.cpython-29.pyc", "tensorflow/sourceless.pyc",
                "numpy/__init__.pyi", "numpy/core/include/numpy/arrayobject.h",
                "numpy/random/bitgen.pxd", "numpy/random/_x.pyx",
                "__editable___tfspark_finder.py",
                "__editable__.tfspark-0.1.0.pth", "tfspark-0.1.0.dist-info/METADATA"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    (root / "bin").mkdir()
    os.symlink("/usr/bin/python3", root / "bin" / "python")
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return site


def test_the_archive_holds_tfspark_and_bytecode_and_leaves_out_pyspark_and_build_files(tmp_path):
    _fake_venv(tmp_path / "venv")
    out = str(tmp_path / "env.tar.gz")
    counts = pack.pack_environment(out, prefix=str(tmp_path / "venv"))
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.getmember("bin/python").issym()
    site = "lib/python3.11/site-packages"
    assert f"{site}/numpy/__init__.py" in names and f"{site}/tensorflow/__init__.py" in names
    assert f"{site}/tfspark/__init__.py" in names and f"{site}/tfspark/pack.py" in names
    assert f"{site}/tensorflow/__pycache__/x.{TAG}.pyc" in names  # this Python's bytecode
    assert f"{site}/tensorflow/sourceless.pyc" in names
    for gone in ("pyspark/__init__.py", "pyspark-4.3.0.dist-info/METADATA",
                 "tensorflow/include/big.h", "__editable___tfspark_finder.py",
                 "__editable__.tfspark-0.1.0.pth", "tensorflow/__pycache__/x.cpython-29.pyc",
                 "numpy/__init__.pyi",
                 "numpy/core/include/numpy/arrayobject.h", "numpy/random/bitgen.pxd",
                 "numpy/random/_x.pyx"):
        assert f"{site}/{gone}" not in names
    assert counts["files"] == len(names)
    pack.pack_environment(out, with_pyspark=True, prefix=str(tmp_path / "venv"))
    with tarfile.open(out) as tar:
        assert f"{site}/pyspark/__init__.py" in tar.getnames()


def test_only_a_virtualenv_can_be_packed(tmp_path):
    with pytest.raises(pack.PackError, match="not a virtualenv .* conda-pack"):
        pack.pack_environment(str(tmp_path / "env.tar.gz"), prefix=str(tmp_path))


def test_spark_jars_sit_at_the_archive_root(tmp_path):
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("spark-core.jar", "hadoop-client-api.jar", "README"):
        (jars / name).write_text("x")
    assert pack.pack_spark_jars(str(tmp_path / "j.zip"), str(jars)) == 2
    assert sorted(zipfile.ZipFile(tmp_path / "j.zip").namelist()) == ["hadoop-client-api.jar",
                                                                       "spark-core.jar"]


def test_the_properties_file_points_spark_at_the_shipped_archives(tmp_path):
    path = str(tmp_path / "tfspark-yarn.conf")
    pack.write_conf(path, pack.properties("hdfs://nn:8020/u/env.tar.gz", "hdfs://nn:8020/u/j.zip"))
    lines = dict(line.split(None, 1) for line in open(path).read().splitlines()
                 if not line.startswith("#"))
    assert lines["spark.yarn.dist.archives"].strip() == "hdfs://nn:8020/u/env.tar.gz#env"
    assert lines["spark.yarn.archive"].strip() == "hdfs://nn:8020/u/j.zip"
    assert lines["spark.pyspark.python"].strip() == "./env/bin/python"
    assert lines["spark.dynamicAllocation.enabled"].strip() == "false"


def test_an_unchanged_environment_is_packed_once_and_reused_from_the_cache(tmp_path):
    import time
    _fake_venv(tmp_path / "venv")
    cache, first, second = tmp_path / "cache", tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    counts = pack.pack_environment(str(first), prefix=str(tmp_path / "venv"), cache_dir=str(cache))
    assert pack.pack_environment(str(second), prefix=str(tmp_path / "venv"),
                                 cache_dir=str(cache)) == counts
    assert second.read_bytes() == first.read_bytes() and len(list(cache.glob("env-*.gz"))) == 1
    # a changed file is packed anew, and only the new archive is kept
    module = next((tmp_path / "venv").rglob("x.py"))
    module.write_text(module.read_text() + "# changed\n")
    os.utime(module, (time.time() + 5, time.time() + 5))
    third = tmp_path / "c.tar.gz"
    pack.pack_environment(str(third), prefix=str(tmp_path / "venv"), cache_dir=str(cache))
    with tarfile.open(third) as tar:
        assert b"# changed" in tar.extractfile(next(
            m for m in tar.getmembers() if m.name.endswith(module.name))).read()
    assert len(list(cache.glob("env-*.gz"))) == 1
