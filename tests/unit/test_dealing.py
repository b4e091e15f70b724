"""The one dealing rule: row i of partition p goes to node (p + i) % n."""
from __future__ import annotations

import random

import pytest

from tfspark._feed.dealing import node_of_partition, shares_of_chunk


def dealt_row_by_row(partition: int, rows: int, nodes: int) -> list:
    counts = [0] * nodes
    for i in range(rows):
        counts[(partition + i) % nodes] += 1
    return counts


@pytest.mark.parametrize("nodes", [1, 2, 3, 7])
def test_a_chunk_gets_what_dealing_each_row_would_give(nodes):
    for first in range(0, 3 * nodes + 2):
        for rows in (0, 1, nodes - 1, nodes, nodes + 1, 5 * nodes + 3):
            assert shares_of_chunk(first, rows, nodes) == dealt_row_by_row(first, rows, nodes)


def test_cutting_a_partition_into_chunks_deals_it_as_a_whole():
    rng = random.Random(3)
    for _ in range(200):
        nodes, partition, rows = rng.randint(1, 6), rng.randint(0, 40), rng.randint(0, 500)
        totals, offset = [0] * nodes, 0
        while offset < rows:
            chunk = min(rows - offset, rng.randint(1, 64))
            for node, count in enumerate(shares_of_chunk(partition + offset, chunk, nodes)):
                totals[node] += count
            offset += chunk
        assert totals == dealt_row_by_row(partition, rows, nodes)


def test_every_node_gets_an_equal_share_of_uneven_partitions_to_one_row_each():
    sizes = [7000, 0, 2600, 3501, 1]
    nodes = 3
    totals = [0] * nodes
    for p, rows in enumerate(sizes):
        for node, count in enumerate(shares_of_chunk(p, rows, nodes)):
            totals[node] += count
    assert sum(totals) == sum(sizes)
    assert max(totals) - min(totals) <= len(sizes)


def test_a_whole_partition_goes_where_its_first_row_would():
    for nodes in (1, 2, 5):
        for p in range(12):
            assert node_of_partition(p, nodes) == dealt_row_by_row(p, 1, nodes).index(1)
