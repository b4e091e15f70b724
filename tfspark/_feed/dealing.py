"""Which TF node gets which rows: one rule for every feed.

**Row ``i`` of partition ``p`` goes to node ``(p + i) % n``** (``n`` nodes that take data, in
share order). Training applies it row by row, in contiguous runs: of every chunk of a
partition, node ``k`` gets as many rows as the rule gives it (:func:`shares_of_chunk`), so each
node gets an equal share, to one row, of every partition however uneven the partitions are (what
MultiWorkerMirroredStrategy's equal steps need). Inference keeps partitions whole, since their
answers come back per partition: a partition goes where its first row would
(:func:`node_of_partition`, ``p % n``). Fed in the stage (``feed_mode="stage"``), Spark first
repartitions the input into one partition per node of the stage; a training node keeps its
own partition whole (it is its share) and the other nodes deal theirs by the row rule.

Pure functions: no I/O, no Spark.
"""
from __future__ import annotations

from typing import List


def shares_of_chunk(first: int, rows: int, nodes: int) -> List[int]:
    """Rows of a chunk for each node, in node order: as many as dealing row ``i`` of the chunk
    to node ``(first + i) % nodes`` would give it (``first``: the partition's index plus the
    chunk's offset in it, so that the odd rows go round the nodes from chunk to chunk)."""
    shares = []
    for node in range(nodes):
        skip = (node - first) % nodes
        shares.append(0 if skip >= rows else (rows - skip + nodes - 1) // nodes)
    return shares


def node_of_partition(partition: int, nodes: int) -> int:
    """The node that takes partition ``partition`` whole: the one its first row would go to."""
    return partition % nodes
