"""tfspark._node.zip_cache: zips on the path unpacked once into a private folder, bytecode cached."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from tfspark._node.zip_cache import importable_path, unpacked


def _zip(tmp_path):
    path = tmp_path / "lib.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("zipped_pkg/__init__.py", "VALUE = 42\n")
    return str(path)


def test_a_zip_is_unpacked_once_and_other_entries_stay(tmp_path):
    zipped, cache = _zip(tmp_path), str(tmp_path / "cache")
    first = unpacked(zipped, cache)
    assert first != zipped and os.path.isfile(os.path.join(first, "zipped_pkg", "__init__.py"))
    assert oct(os.stat(cache).st_mode & 0o777) == "0o700"
    assert unpacked(zipped, cache) == first  # the same copy next time
    assert importable_path([str(tmp_path), zipped], cache) == [str(tmp_path), first]
    assert unpacked(str(tmp_path / "missing.zip"), cache) == str(tmp_path / "missing.zip")


def test_a_big_zip_stays_zipped(tmp_path, monkeypatch):
    monkeypatch.setattr("tfspark._node.zip_cache.MAX_ZIP_BYTES", 10)
    zipped = _zip(tmp_path)
    assert unpacked(zipped, str(tmp_path / "cache")) == zipped


def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    zipped, cache = _zip(tmp_path), tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    assert unpacked(zipped, str(cache)) == zipped


def test_the_unpacked_copy_imports_and_keeps_its_bytecode(tmp_path):
    copy = unpacked(_zip(tmp_path), str(tmp_path / "cache-tfspark-unzipped-0"))
    code = ("from tfspark._node.zip_cache import import_caching_bytecode\n"
            "import_caching_bytecode('zipped_pkg')\nimport zipped_pkg\nprint(zipped_pkg.VALUE)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([copy] + sys.path),
               PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "42", done.stderr
    assert os.listdir(os.path.join(copy, "zipped_pkg", "__pycache__"))
