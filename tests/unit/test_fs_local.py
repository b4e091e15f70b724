"""tfspark.fs on local paths (no Hadoop needed)."""
import os

import pytest

from tfspark import fs
from tfspark.errors import FileSystemError, TFSparkError

from conftest import read_tree  # tests/conftest.py




def _make_tree(root):
    os.makedirs(os.path.join(root, "a", "b"))
    os.makedirs(os.path.join(root, "empty"))
    for rel, data in {"top.txt": b"top", "a/one.bin": bytes(range(256)) * 100,
                      "a/b/deep.txt": b"deep"}.items():
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)
    return root


def _leftovers(directory):
    return [n for n in os.listdir(directory) if "._tmp-" in n or "._old-" in n]


def test_get_filesystem_picks_local_for_plain_and_file_paths(tmp_path):
    assert fs.get_filesystem(str(tmp_path)) is fs.LOCAL
    assert fs.get_filesystem(f"file://{tmp_path}") is fs.LOCAL
    assert fs.get_filesystem("relative/path") is fs.LOCAL


def test_round_trip_bytes_text_and_status(tmp_path):
    path = str(tmp_path / "sub" / "data.bin")
    fs.write(path, b"hello")
    assert fs.exists(path) and not fs.isdir(path)
    assert fs.read_bytes(f"file://{path}") == b"hello"
    st = fs.status(path)
    assert (st.name, st.is_dir, st.size, st.path) == ("data.bin", False, 5, f"file://{path}")
    with fs.open(str(tmp_path / "t.txt"), "w") as out:
        out.write("héllo\n")
    with fs.open(str(tmp_path / "t.txt"), "r") as inp:
        assert inp.read() == "héllo\n"
    assert fs.listdir(str(tmp_path)) == ["sub", "t.txt"]
    assert fs.isdir(str(tmp_path / "sub"))


def test_write_refuses_existing_file_unless_overwrite(tmp_path):
    path = str(tmp_path / "f")
    fs.write(path, b"one")
    with pytest.raises(FileSystemError) as err:
        fs.write(path, b"two")
    assert err.value.reason == "exists" and path in str(err.value)
    assert isinstance(err.value, TFSparkError)
    fs.write(path, b"two", overwrite=True)
    assert fs.read_bytes(path) == b"two"
    assert _leftovers(tmp_path) == []


def test_interrupted_write_leaves_nothing(tmp_path):
    path = str(tmp_path / "f")

    def chunks():
        yield b"x" * 1000
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        fs.write(path, chunks())
    assert os.listdir(tmp_path) == []


def test_upload_download_tree_copies_everything(tmp_path):
    src = _make_tree(str(tmp_path / "src"))
    fs.upload(src, str(tmp_path / "copy"))
    fs.download(str(tmp_path / "copy"), str(tmp_path / "back"), n_threads=2)
    assert read_tree(str(tmp_path / "back")) == read_tree(src)
    with pytest.raises(FileSystemError, match="already exists"):
        fs.upload(src, str(tmp_path / "copy"))
    with pytest.raises(FileSystemError) as err:
        fs.upload(str(tmp_path / "missing"), str(tmp_path / "x"))
    assert err.value.reason == "not_found" and "missing" in str(err.value)


def test_atomic_output_success_and_failure(tmp_path):
    target = str(tmp_path / "model")
    with fs.atomic_output(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and not os.path.exists(target)
        _make_tree(tmp)
    assert read_tree(target)["a/b/deep.txt"] == b"deep"

    other = str(tmp_path / "other")
    with pytest.raises(ValueError):
        with fs.atomic_output(other) as tmp:
            _make_tree(tmp)
            raise ValueError("boom")
    assert not os.path.exists(other)
    assert _leftovers(tmp_path) == []


def test_atomic_output_overwrite_replaces_directory(tmp_path):
    target = str(tmp_path / "model")
    _make_tree(target)
    with pytest.raises(FileSystemError, match="already exists"):
        with fs.atomic_output(target):
            pass
    with fs.atomic_output(target, overwrite=True) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "new.txt"), "wb") as fh:
            fh.write(b"new")
    assert read_tree(target) == {"new.txt": b"new"}
    assert _leftovers(tmp_path) == []

    # a failing replacement leaves the old content untouched
    with pytest.raises(KeyError):
        with fs.atomic_output(target, overwrite=True) as tmp:
            os.makedirs(tmp)
            raise KeyError("fail")
    assert read_tree(target) == {"new.txt": b"new"}


def test_atomic_output_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileSystemError, match="nothing was written"):
        with fs.atomic_output(str(tmp_path / "x")):
            pass


def test_glob_delete_rename(tmp_path):
    root = _make_tree(str(tmp_path / "r"))
    fs.write(os.path.join(root, ".hidden"), b"")
    assert fs.glob(os.path.join(root, "*")) == [
        f"file://{root}/{n}" for n in ("a", "empty", "top.txt")]
    assert fs.glob(os.path.join(root, "a", "*", "*.txt")) == [f"file://{root}/a/b/deep.txt"]
    assert fs.glob(os.path.join(root, "nope*")) == []
    with pytest.raises(FileSystemError):
        fs.delete(os.path.join(root, "a"))  # not empty, not recursive
    fs.delete(os.path.join(root, "a"), recursive=True)
    with pytest.raises(FileSystemError) as err:
        fs.delete(os.path.join(root, "a"))
    assert err.value.reason == "not_found"
    fs.delete(os.path.join(root, "a"), missing_ok=True)
    fs.rename(os.path.join(root, "top.txt"), os.path.join(root, "moved", "top.txt"))
    assert fs.read_bytes(os.path.join(root, "moved", "top.txt")) == b"top"
    with pytest.raises(FileSystemError, match="already exists"):
        fs.rename(os.path.join(root, "moved"), os.path.join(root, "empty"))


def test_missing_file_and_directory_errors(tmp_path):
    with pytest.raises(FileSystemError) as err:
        with fs.open(str(tmp_path / "nope")):
            pass
    assert err.value.reason == "not_found" and "nope" in str(err.value)
    with pytest.raises(FileSystemError, match="no such file"):
        fs.listdir(str(tmp_path / "nope"))
    with pytest.raises(FileSystemError) as err:
        fs.status(str(tmp_path / "nope"))
    assert err.value.reason == "not_found"


def test_unknown_scheme_is_named_with_the_supported_ones():
    for call in (lambda: fs.get_filesystem("s3://bucket/key"), lambda: fs.exists("s3://b/k"),
                 lambda: fs.resolve("gs://b/k")):
        with pytest.raises(FileSystemError) as err:
            call()
        assert "'s3'" in str(err.value) or "'gs'" in str(err.value)
        assert "hdfs://" in str(err.value) and "file://" in str(err.value)
        assert err.value.reason == "unsupported"


def test_resolve_and_join(tmp_path, monkeypatch):
    monkeypatch.setenv("HADOOP_USER_NAME", "alice")
    assert fs.resolve("data/x", "hdfs://nn:8020") == "hdfs://nn:8020/user/alice/data/x"
    assert fs.resolve("/abs/./x", "hdfs://nn:8020") == "hdfs://nn:8020/abs/x"
    assert fs.resolve("x", "hdfs://nn:8020", user="bob") == "hdfs://nn:8020/user/bob/x"
    assert fs.resolve("hdfs://other:1/p", "hdfs://nn:8020") == "hdfs://other:1/p"
    assert fs.resolve("rel/y", cwd=str(tmp_path)) == f"file://{tmp_path}/rel/y"
    assert fs.resolve("rel/y", "file:///", cwd="/base") == "file:///base/rel/y"
    assert fs.join("hdfs://nn:8020/a", "b", "c") == "hdfs://nn:8020/a/b/c"
    assert fs.join("file:///a", "b") == "file:///a/b"
    assert fs.join("/a", "b") == "/a/b"
    assert fs.split_url("webhdfs://h:9870/p") == ("webhdfs", "h:9870", "/p")


def test_namenode_http_address_from_config(tmp_path, monkeypatch):
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn1:8020</value>"
        "</property></configuration>")
    (tmp_path / "hdfs-site.xml").write_text("<configuration>" + "".join(
        f"<property><name>{k}</name><value>{v}</value></property>" for k, v in {
            "dfs.namenode.rpc-address": "nn1:8020",
            "dfs.namenode.http-address": "nn1:50070",
            "dfs.nameservices": "ha",
            "dfs.ha.namenodes.ha": "a,b",
            "dfs.namenode.http-address.ha.a": "h1:9870",
            "dfs.namenode.http-address.ha.b": "h2:9870",
        }.items()) + "</configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(fs.config, "_spark_default_fs", lambda: None)  # no driver in this process
    assert fs.namenode_http_urls("nn1:8020") == ["http://nn1:50070"]
    assert fs.namenode_http_urls("nn1") == ["http://nn1:50070"]
    assert fs.namenode_http_urls("ha") == ["http://h1:9870", "http://h2:9870"]
    assert fs.namenode_http_urls("other:8020") == ["http://other:9870"]
    assert fs.default_fs() == "hdfs://nn1:8020"
    hdfs_fs = fs.get_filesystem("hdfs:///x", user="carol")
    assert (hdfs_fs.authority, hdfs_fs.http_urls, hdfs_fs.user) == (
        "nn1:8020", ["http://nn1:50070"], "carol")
    assert fs.get_filesystem("hdfs://nn1:8020/y", user="carol") is hdfs_fs


def test_hdfs_path_without_namenode_needs_a_default_fs(monkeypatch):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    with pytest.raises(FileSystemError, match="names no NameNode"):
        fs.get_filesystem("hdfs:///data")


def test_open_a_directory_or_bad_mode(tmp_path):
    with pytest.raises(FileSystemError, match="is a directory"):
        with fs.open(str(tmp_path)):
            pass
    with pytest.raises(FileSystemError, match="mode must be 'rb', 'r', 'wb' or 'w', not 'a'"):
        with fs.open(str(tmp_path / "x"), "a"):
            pass


def test_every_path_form_resolves_by_one_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("HADOOP_USER_NAME", "alice")
    hdfs = "hdfs://nn:8020"
    assert fs.resolve("hdfs:///user/root/mnist/data", hdfs) == f"{hdfs}/user/root/mnist/data"
    assert fs.resolve("hdfs:///a/../b/./c", hdfs) == f"{hdfs}/b/c"
    assert fs.resolve("hdfs://other:9000/x", hdfs) == "hdfs://other:9000/x"
    assert fs.resolve("mnist/export", hdfs) == f"{hdfs}/user/alice/mnist/export"
    assert fs.resolve("/models/m", hdfs) == f"{hdfs}/models/m"
    assert fs.resolve("file:///tmp/x", hdfs) == "file:///tmp/x"
    assert fs.resolve("/tmp/x", "file:///") == "file:///tmp/x"
    assert fs.resolve("x", "file:///", cwd="/job") == "file:///job/x"
    with pytest.raises(fs.FileSystemError, match=r"names no NameNode.*hdfs://host:port/data"):
        fs.resolve("hdfs:///data", "file:///")


def test_the_default_filesystem_comes_from_hadoop_conf_dir(tmp_path, monkeypatch):
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:8020</value>"
        "</property></configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    monkeypatch.setenv("HADOOP_USER_NAME", "bob")
    monkeypatch.setattr(fs.config, "_spark_default_fs", lambda: None)  # no driver in this process
    assert fs.default_fs() == "hdfs://nn:8020"
    assert fs.resolve("hdfs:///d") == "hdfs://nn:8020/d"
    assert fs.resolve("d") == "hdfs://nn:8020/user/bob/d"
    assert fs.get_filesystem("hdfs:///d").native("hdfs:///d") == "/d"


def test_the_running_spark_drivers_default_filesystem_wins(tmp_path, monkeypatch):
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:8020</value>"
        "</property></configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    monkeypatch.setattr(fs.config, "_spark_default_fs", lambda: "hdfs://from-spark:9000")
    assert fs.resolve("hdfs:///d") == "hdfs://from-spark:9000/d"
