"""tfspark.fs against a real HDFS (WebHDFS, permissions on)."""
import os
import socket
import time
import uuid

import pytest

from tfspark import fs
from tfspark.errors import FileSystemError

from conftest import read_tree  # tests/conftest.py


@pytest.fixture
def base(hdfs_cluster, hadoop_env, request):
    """A fresh hdfs:// directory for one test (owned by the superuser running the cluster)."""
    url = f"{hdfs_cluster.default_fs}/tests/{request.node.name}-{uuid.uuid4().hex[:8]}"
    fs.mkdirs(url)
    return url


def _make_tree(root):
    os.makedirs(os.path.join(root, "a", "b"))
    os.makedirs(os.path.join(root, "empty"))
    files = {"top.txt": b"top", "a/one.bin": os.urandom(3 * 1024 * 1024 + 17),
             "a/b/deep.txt": b"deep", "a/b/zero": b""}
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)
    return root




def _leftovers(url):
    return [n for n in fs.listdir(url) if "._tmp-" in n or "._old-" in n]


def test_file_round_trip(base, tmp_path):
    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    remote = fs.join(base, "sub", "data.bin")
    fs.upload(str(local), remote)
    assert fs.status(remote).size == local.stat().st_size
    assert fs.read_bytes(remote) == local.read_bytes()
    fs.download(remote, str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()

    with fs.open(fs.join(base, "t.txt"), "w") as out:
        out.write("line 1\nline 2\n")
    with fs.open(fs.join(base, "t.txt"), "r") as inp:
        assert inp.readlines() == ["line 1\n", "line 2\n"]
    assert fs.listdir(base) == ["sub", "t.txt"]
    assert fs.isdir(fs.join(base, "sub")) and not fs.isdir(fs.join(base, "t.txt"))
    assert fs.glob(fs.join(base, "*", "*.bin")) == [remote]
    assert _leftovers(base) == [] and _leftovers(fs.join(base, "sub")) == []


def test_directory_round_trip(base, tmp_path):
    src = _make_tree(str(tmp_path / "src"))
    remote = fs.join(base, "tree")
    fs.upload(src, remote, n_threads=3)
    assert fs.listdir(remote) == ["a", "empty", "top.txt"]
    fs.download(remote, str(tmp_path / "back"), n_threads=3)
    assert read_tree(str(tmp_path / "back")) == read_tree(src)
    assert _leftovers(base) == []


def test_relative_paths_land_in_the_home_directory(hdfs_cluster, hadoop_env):
    name = f"rel-{uuid.uuid4().hex[:8]}"
    hdfs = fs.get_filesystem(hdfs_cluster.default_fs)
    hdfs.write(name, b"x")
    assert fs.exists(f"{hdfs_cluster.default_fs}/user/{hdfs.user}/{name}")
    assert fs.resolve(name, fs.default_fs()) == \
        f"{hdfs_cluster.default_fs}/user/{hdfs.user}/{name}"
    hdfs.delete(name)


def test_webhdfs_scheme_reaches_the_same_files(base, hdfs_cluster):
    fs.write(fs.join(base, "f"), b"via hdfs")
    path = fs.split_url(base)[2]
    web = f"webhdfs://{hdfs_cluster.webhdfs_url.split('//')[1]}{path}/f"
    assert fs.read_bytes(web) == b"via hdfs"


def test_atomic_replace_of_a_directory(base, tmp_path):
    target = fs.join(base, "model")
    fs.upload(_make_tree(str(tmp_path / "v1")), target)
    with pytest.raises(FileSystemError) as err:
        with fs.atomic_output(target):
            pass
    assert err.value.reason == "exists" and target in str(err.value)

    with fs.atomic_output(target, overwrite=True) as local:
        os.makedirs(os.path.join(local, "v2"))
        with open(os.path.join(local, "v2", "weights"), "wb") as fh:
            fh.write(b"v2")
    assert fs.listdir(target) == ["v2"]
    assert fs.read_bytes(fs.join(target, "v2", "weights")) == b"v2"
    assert _leftovers(base) == []

    with pytest.raises(RuntimeError):
        with fs.atomic_output(target, overwrite=True) as local:
            os.makedirs(local)
            raise RuntimeError("training crashed")
    assert fs.listdir(target) == ["v2"]
    assert _leftovers(base) == []


def test_exists_without_overwrite(base, tmp_path):
    remote = fs.join(base, "f")
    fs.write(remote, b"one")
    (tmp_path / "f").write_bytes(b"two")
    for call in (lambda: fs.write(remote, b"two"),
                 lambda: fs.upload(str(tmp_path / "f"), remote),
                 lambda: fs.rename(fs.join(base, "f"), base)):
        with pytest.raises(FileSystemError) as err:
            call()
        assert err.value.reason == "exists" and "already exists" in str(err.value)
    with pytest.raises(FileSystemError, match="already exists"):
        fs.download(remote, str(tmp_path / "f"))
    assert fs.read_bytes(remote) == b"one"
    fs.upload(str(tmp_path / "f"), remote, overwrite=True)
    assert fs.read_bytes(remote) == b"two"
    assert _leftovers(base) == []


def test_interrupted_upload_leaves_no_file(base):
    remote = fs.join(base, "partial.bin")

    def chunks():
        for _ in range(4):
            yield b"x" * (1 << 20)
        raise ConnectionResetError("source went away")

    with pytest.raises(ConnectionResetError):
        fs.write(remote, chunks())
    assert not fs.exists(remote)
    assert fs.listdir(base) == []

    class BrokenFile:
        def __init__(self):
            self.reads = 0

        def read(self, n=-1):
            self.reads += 1
            if self.reads > 2:
                raise OSError("disk read error")
            return b"y" * 1000

    with pytest.raises(OSError, match="disk read error"):
        fs.write(remote, BrokenFile())
    assert fs.listdir(base) == []


def test_missing_paths(base, tmp_path):
    missing = fs.join(base, "nope")
    for call in (lambda: fs.status(missing), lambda: fs.listdir(missing),
                 lambda: fs.download(missing, str(tmp_path / "x")),
                 lambda: fs.read_bytes(missing), lambda: fs.delete(missing)):
        with pytest.raises(FileSystemError) as err:
            call()
        assert err.value.reason == "not_found", err.value
        assert missing in str(err.value)
    assert not os.path.exists(tmp_path / "x")


def test_permission_denied_for_another_user(base, tmp_path):
    private = fs.join(base, "private")
    fs.write(fs.join(private, "secret"), b"s")
    fs.chmod(private, 0o700)
    fs.chmod(base, 0o777)
    assert fs.status(private).permission == "700"

    alice = fs.get_filesystem(base, user="alice")
    assert alice.user == "alice"
    (tmp_path / "f").write_bytes(b"f")
    for call in (lambda: alice.listdir(private),
                 lambda: alice.read_bytes(fs.join(private, "secret")),
                 lambda: alice.write(fs.join(private, "new"), b"n"),
                 lambda: alice.upload(str(tmp_path / "f"), fs.join(private, "up"))):
        with pytest.raises(FileSystemError) as err:
            call()
        assert err.value.reason == "permission", err.value
        assert "user=alice" in str(err.value) and private in str(err.value)

    # HADOOP_USER_NAME picks the user of the module-level functions
    os.environ["HADOOP_USER_NAME"] = "alice"
    try:
        with pytest.raises(FileSystemError, match="permission denied"):
            fs.listdir(private)
        fs.write(fs.join(base, "alice-file"), b"mine")  # base is world-writable
        assert fs.status(fs.join(base, "alice-file")).owner == "alice"
    finally:
        del os.environ["HADOOP_USER_NAME"]


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_namenode_fails_fast(tmp_path, monkeypatch):
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(FileSystemError) as err:
        fs.exists(f"webhdfs://127.0.0.1:{port}/x")
    assert err.value.reason == "unreachable"
    assert f"http://127.0.0.1:{port}" in str(err.value)

    # hdfs:// with the http address taken from HADOOP_CONF_DIR
    (tmp_path / "hdfs-site.xml").write_text(
        "<configuration><property><name>dfs.namenode.rpc-address</name>"
        "<value>127.0.0.1:1</value></property><property><name>dfs.namenode.http-address"
        f"</name><value>127.0.0.1:{port}</value></property></configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    with pytest.raises(FileSystemError) as err:
        fs.listdir("hdfs://127.0.0.1:1/data")
    assert err.value.reason == "unreachable"
    assert f"http://127.0.0.1:{port}" in str(err.value) and "hdfs://127.0.0.1:1/data" in \
        str(err.value)
    assert time.monotonic() - started < 20


def test_ha_nameservice_uses_the_namenode_that_answers(base, hdfs_cluster, tmp_path,
                                                       monkeypatch):
    fs.write(fs.join(base, "f"), b"ha")
    live = hdfs_cluster.webhdfs_url.split("//")[1]
    props = {"dfs.nameservices": "testns", "dfs.ha.namenodes.testns": "nn1,nn2",
             "dfs.namenode.http-address.testns.nn1": f"127.0.0.1:{_closed_port()}",
             "dfs.namenode.http-address.testns.nn2": live}
    (tmp_path / "hdfs-site.xml").write_text("<configuration>" + "".join(
        f"<property><name>{k}</name><value>{v}</value></property>" for k, v in props.items())
        + "</configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    ha_url = "hdfs://testns" + fs.split_url(base)[2] + "/f"
    assert fs.get_filesystem(ha_url).http_urls[1] == f"http://{live}"
    assert fs.read_bytes(ha_url) == b"ha"
