"""Node side of the Spark feed, receiving: feeding tasks' streams -> spill files on local disk.

Runs in a TF node's own process. :class:`FeedReceiver` accepts authenticated connections from the
feeding Spark tasks (:mod:`tfspark._feed.spark_tasks`); each carries one Arrow stream, written to an
Arrow IPC file (bounded memory: one record batch at a time) -- on ParameterServerStrategy workers,
to small TFRecord files their graph-only ``dataset_fn`` can read -- and published by rename when
complete. It then hands the file to the node's :class:`~tfspark._feed.feed_state.FeedState`
(training) or waits for its results (inference). Knows nothing of TensorFlow.
"""
from __future__ import annotations

import os
import shutil
import socket
import threading
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import pyarrow as pa

from tfspark._feed.protocol import TRAIN
from tfspark.control import ChannelError, Connection, accept_authenticated, tcp_server

if TYPE_CHECKING:
    from tfspark._feed.feed_state import FeedState

#: Rows per spilled TFRecord file on a ParameterServerStrategy worker.
_PSS_FILE_ROWS = 1024


class FeedReceiver:
    """Accepts the feeding tasks' connections on ``(host, port)`` and spills what they send."""

    def __init__(self, feed: "FeedState", host: str, port: int, secret: bytes, spill_dir: str,
                 spill_format: str = "arrow"):
        self.feed, self.secret, self.spill_dir = feed, secret, spill_dir
        self.spill_format = spill_format
        os.makedirs(spill_dir, exist_ok=True)
        # the node's Spark task holds the port reserved for us; SO_REUSEADDR lets us bind it
        self._server = tcp_server(host, port, self._serve)
        threading.Thread(target=self._server.serve_forever, name="tfspark-feed-receiver",
                         daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            connection = accept_authenticated(sock, self.secret)
            header = connection.recv()
            kind = header["type"]
            if kind == "data":
                self._receive(connection, header)
            elif kind == "end":
                self.feed.end_feed(header["feed_id"], header["rows_per_node"],
                                   header["num_epochs"], header.get("schema", b""),
                                   has_validation=bool(header.get("has_validation")),
                                   stream=header.get("stream"))
                if header.get("last"):  # the stage's own feed: no other comes
                    self.feed.driver_done()
                connection.send({"ok": True})
            elif kind == "stream_end":
                self.feed.end_stream({"error": header.get("error")})
                connection.send({"ok": True})
            elif kind == "discard":  # a trained micro-batch: its rows are no longer needed
                self.feed.forget(header["feed_id"])
                shutil.rmtree(self._folder(TRAIN, header["feed_id"]), ignore_errors=True)
                connection.send({"ok": True})
            elif kind == "done":
                self.feed.driver_done()
                connection.send({"ok": True})
        except (ChannelError, OSError, pa.ArrowException):
            pass  # the sender sees the broken connection and fails its task
        finally:
            sock.close()

    def _receive(self, connection: Connection, header: Dict) -> None:
        path, rows = self._spill(connection, header) if not header.get("empty") else (None, 0)
        if header["mode"] == TRAIN:
            self.feed.add_train_file(header["feed_id"], header["partition"], path, rows)
            connection.send({"rows": rows})
            return
        partition = self.feed.add_inference_partition(path, rows)
        partition.done.wait()
        connection.send({"results": partition.results, "terminated": self.feed.discarding})

    def _spill(self, connection: Connection, header: Dict) -> Tuple[Optional[str], int]:
        reader = pa.ipc.open_stream(connection.makefile("rb"))
        if self.feed.discarding:
            return None, sum(batch.num_rows for batch in reader)
        folder = self._folder(header["mode"], header["feed_id"])
        os.makedirs(folder, exist_ok=True)
        final = os.path.join(folder, f"part-{header['partition']:06d}.{self.spill_format}")
        if self.spill_format == "tfrecord":  # for PSS workers, whose dataset_fn is a graph
            return self._spill_tfrecords(reader, final)
        partial = f"{final}.{threading.get_ident()}.partial"
        rows = 0
        with pa.OSFile(partial, "wb") as sink, pa.ipc.new_file(sink, reader.schema) as out:
            for batch in reader:
                out.write_batch(batch)
                rows += batch.num_rows
        os.replace(partial, final)
        return final, rows

    def _folder(self, mode: str, feed_id: int) -> str:
        return os.path.join(self.spill_dir, f"{mode}-{feed_id}")

    def _spill_tfrecords(self, reader, final: str) -> Tuple[str, int]:
        """Spill as TFRecord files of at most ``_PSS_FILE_ROWS`` rows (``final`` gets a part
        number), so that a graph-only ``dataset_fn`` can mix rows well by shuffling files."""
        from tfspark._tfrecord.codec import (ColumnSpec, encode_examples, frame_records,
                                             kind_of_arrow)
        specs = [ColumnSpec(f.name, kind_of_arrow(
            f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type),
            int(pa.types.is_fixed_size_list(f.type))) for f in reader.schema]
        stem = final[:-len(".tfrecord")]
        written: List[Tuple[str, str]] = []
        rows = 0
        try:
            for batch in reader:
                for start in range(0, batch.num_rows, _PSS_FILE_ROWS):
                    part = batch.slice(start, _PSS_FILE_ROWS)
                    path = f"{stem}-{len(written):05d}.tfrecord"
                    partial = f"{path}.{threading.get_ident()}.partial"
                    with open(partial, "wb") as sink:
                        sink.write(frame_records(encode_examples(part, specs)))
                    written.append((partial, path))
                    rows += part.num_rows
        except BaseException:
            for partial, _ in written:
                os.remove(partial)
            raise
        for partial, path in written:  # the partition appears whole or not at all
            os.replace(partial, path)
        return (written[0][1] if written else final), rows
