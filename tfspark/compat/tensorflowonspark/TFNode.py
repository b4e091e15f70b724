"""TensorFlowOnSpark's ``TFNode`` module on tfspark: ``DataFeed``, ``hdfs_path`` and friends.

A TFoS ``map_fun(args, ctx)`` gets a :class:`TFNodeContext` (TFoS's attributes over tfspark's
:class:`~tfspark._node.context.NodeContext`, whose own attributes and methods stay reachable), and
reads Spark-fed rows with ``TFNode.DataFeed(ctx.mgr, ...)``: tfspark's
:class:`~tfspark._feed.datafeed.DataFeed` behind TFoS's interface.
"""
from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional, Union

from tfspark.compat.tensorflowonspark._errors import NotKeptError
from tfspark.errors import TFSparkError

#: URL schemes TFoS's ``hdfs_path`` returns unchanged (Hadoop-compatible filesystems).
HADOOP_SCHEMES = ("adl://", "file://", "hdfs://", "oss://", "s3://", "s3a://", "s3n://",
                  "swift://", "viewfs://", "wasb://")


def hdfs_path(ctx: Any, path: str) -> str:
    """An absolute URL for ``path``, as TFoS normalized it.

    A path with a Hadoop scheme is returned as is; an absolute path gets ``ctx.defaultFS`` in
    front; a relative path resolves into the user's home on HDFS/viewfs
    (``<defaultFS>/user/<user>/<path>``) or into ``ctx.working_dir`` on a local default FS
    (``file://<working_dir>/<path>``).
    """
    from tfspark.fs import absolute
    if path.startswith(HADOOP_SCHEMES):
        return path
    default_fs = without_root_slash(ctx.defaultFS)
    if path.startswith("/"):
        return default_fs + path
    if default_fs.startswith(("hdfs://", "viewfs://")):
        user = getattr(ctx, "user", None) or _user()
        return f"{default_fs}/user/{user}/{path}"
    if default_fs.startswith("file://"):
        return "file://" + absolute(path, "file:///", ctx.working_dir)
    return f"{default_fs}/{path}"


def without_root_slash(default_fs: str) -> str:
    """``fs.defaultFS`` as TFoS kept it: ``file:///`` -> ``file://``, ``hdfs://nn:8020/`` ->
    ``hdfs://nn:8020`` (a bare ``scheme://`` stays)."""
    return default_fs[:-1] if default_fs.endswith("/") and not default_fs.endswith("://") \
        else default_fs


def _user() -> str:
    import getpass
    import os
    return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()


class _Manager:
    """What ``ctx.mgr`` is: the handle ``DataFeed(ctx.mgr)`` takes. TFoS's ``TFManager`` queues
    and key-value state are not kept."""

    def get_queue(self, qname: str) -> Any:
        raise NotKeptError("ctx.mgr.get_queue()", "read rows with TFNode.DataFeed(ctx.mgr) or "
                                                  "ctx.get_data_feed()")

    def get(self, key: str) -> Any:
        raise NotKeptError("ctx.mgr state", "the feed's state is DataFeed.should_stop()")

    def set(self, key: str, value: Any) -> None:
        raise NotKeptError("ctx.mgr state", "stop taking data with DataFeed.terminate()")


class DataFeed:
    """TFoS's ``DataFeed(mgr, train_mode=True, qname_in, qname_out, input_mapping)``.

    ``next_batch`` returns a list of rows (tuples in the fed column order), or, with
    ``input_mapping`` (``{column: tensor}``), a dict ``{tensor: [values]}`` with the columns
    taken in sorted order, as TFoS's pipeline feeds them. Whether rows are training or
    inference rows follows what the driver sends (``cluster.train`` or ``cluster.inference``),
    so TFoS programs that open a training feed with ``train_mode=False`` keep working.
    """

    def __init__(self, mgr: Any, train_mode: bool = True, qname_in: str = "input",
                 qname_out: str = "output", input_mapping: Optional[Dict[str, str]] = None):
        from tfspark._feed.datafeed import get_data_feed
        if not isinstance(mgr, _Manager):
            raise TFSparkError(f"DataFeed takes ctx.mgr (the map_fun's ctx), got {type(mgr)}")
        self.mgr, self.train_mode = mgr, train_mode
        self.qname_in, self.qname_out = qname_in, qname_out
        self.input_tensors = ([tensor for _, tensor in sorted(input_mapping.items())]
                              if input_mapping else None)
        self.done_feeding = False
        self._feed = get_data_feed(None)  # training or inference: whichever arrives

    def next_batch(self, batch_size: int) -> Union[List[Any], Dict[str, List[Any]]]:
        rows = self._feed.next_batch(batch_size)
        if len(rows) < batch_size:
            self.done_feeding = self._feed.should_stop()
        if self.input_tensors is None:
            return rows
        batch: Dict[str, List[Any]] = {tensor: [] for tensor in self.input_tensors}
        for row in rows:
            values = row if isinstance(row, tuple) else (row,)
            for tensor, value in zip(self.input_tensors, values):
                batch[tensor].append(value)
        return batch

    def should_stop(self) -> bool:
        self.done_feeding = self.done_feeding or self._feed.should_stop()
        return self.done_feeding

    def batch_results(self, results: List[Any]) -> None:
        self._feed.batch_results(results)

    def terminate(self) -> None:
        self._feed.terminate()


def next_batch(mgr: Any, batch_size: int, qname: str = "input") -> List[Any]:
    return DataFeed(mgr, qname_in=qname).next_batch(batch_size)


def batch_results(mgr: Any, results: List[Any], qname: str = "output") -> None:
    DataFeed(mgr, qname_out=qname).batch_results(results)


def terminate(mgr: Any, qname: str = "input") -> None:
    DataFeed(mgr, qname_in=qname).terminate()


def release_port(ctx: Any) -> None:
    """Close ``ctx.tmp_socket``, the hold on this node's port that ``TFCluster.run(...,
    release_port=False)`` leaves to ``map_fun`` (TFoS's contract); nothing to do otherwise."""
    if getattr(ctx, "tmp_socket", None) is not None:
        ctx.tmp_socket.close()
        ctx.tmp_socket = None


def start_cluster_server(ctx: Any, num_gpus: int = 1, rdma: bool = False) -> Any:
    raise NotKeptError(
        "start_cluster_server (TF1 tf.train.Server)",
        "TF_CONFIG is set on every node: create tf.distribute.MultiWorkerMirroredStrategy() "
        "or ctx.parameter_server_strategy() instead")


def export_saved_model(sess: Any, export_dir: str, tag_set: Any, signatures: Any) -> None:
    raise NotKeptError(
        "TFNode.export_saved_model (TF1 sessions)",
        "export a Keras model with compat.export_saved_model(model, export_dir, is_chief) or "
        "tfspark.export.export_saved_model(model, export_dir, ctx)")


class TFNodeContext:
    """TFoS's ``ctx``: ``executor_id``/``worker_num``, ``job_name``, ``task_index``,
    ``cluster_spec``, ``num_workers``, ``defaultFS``, ``working_dir``, ``mgr`` and its methods;
    anything else is tfspark's :class:`~tfspark._node.context.NodeContext` (``ctx.is_chief``, ...)."""

    def __init__(self, node_context: Any, release_port: bool = True):
        self._node = node_context
        self.executor_id = self.worker_num = node_context.worker_num
        self.job_name = node_context.job_name
        self.task_index = node_context.task_index
        self.cluster_spec = node_context.cluster_spec
        self.num_workers = node_context.num_workers
        self.defaultFS = without_root_slash(node_context.default_fs)
        self.working_dir = node_context.working_dir
        self.user = node_context.user
        self.mgr = _Manager()
        self.tmp_socket = None if release_port else _hold_own_port(node_context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_node"], name)

    def absolute_path(self, path: str) -> str:
        return hdfs_path(self, path)

    def get_data_feed(self, train_mode: bool = True, qname_in: str = "input",
                      qname_out: str = "output",
                      input_mapping: Optional[Dict[str, str]] = None) -> DataFeed:
        return DataFeed(self.mgr, train_mode, qname_in, qname_out, input_mapping)

    def release_port(self) -> None:
        release_port(self)

    def start_cluster_server(self, num_gpus: int = 1, rdma: bool = False) -> Any:
        return start_cluster_server(self, num_gpus, rdma)

    def export_saved_model(self, sess: Any, export_dir: str, tag_set: Any,
                           signatures: Any) -> None:
        export_saved_model(sess, export_dir, tag_set, signatures)


def _hold_own_port(node_context: Any) -> Optional[socket.socket]:
    """A socket bound to this node's TF server port (its ``cluster_spec`` address), as TFoS
    hands ``map_fun`` with ``release_port=False``: until ``ctx.release_port()`` no other
    socket can bind the port. tfspark's task holds the port too (bound with SO_REUSEADDR,
    never listening), so this one binds with SO_REUSEADDR beside it; TF's server binds the
    same way once both are closed or not."""
    addresses = node_context.cluster_spec.get(node_context.job_name, [])
    if node_context.task_index >= len(addresses):
        return None
    host, _, port = addresses[node_context.task_index].rpartition(":")
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError:
        sock.close()
        raise
    return sock


def run_tfos_function(map_fun: Any, args: Any, ctx: Any, release_port: bool = True) -> Any:
    """On a node: call a TFoS ``map_fun(args, ctx)`` with TFoS's ``ctx``; with
    ``release_port=False``, ``ctx.tmp_socket`` holds the node's port until ``map_fun``
    calls ``ctx.release_port()`` (closed when ``map_fun`` returns, if it did not)."""
    context = TFNodeContext(ctx, release_port)
    try:
        return map_fun(args, context)
    finally:
        context.release_port()
