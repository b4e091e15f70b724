"""tfspark.tfrecord.pack_files: TFRecord files grouped into read partitions as Spark packs files."""
from __future__ import annotations

from tfspark.tfrecord import pack_files

MB = 1 << 20


def test_small_files_share_partitions_in_path_order_and_big_ones_stand_alone():
    groups = pack_files([1 * MB] * 80, parallelism=2)   # 80 x (1 + 4) MB: 200 MB per core
    assert [i for g in groups for i in g] == list(range(80))  # every file once, in order
    assert len(groups) == 4 and all(len(g) == 25 for g in groups[:3])  # 128 MB partitions
    assert pack_files([300 * MB, 1 * MB, 1 * MB, 300 * MB], parallelism=2) == [[0], [1, 2], [3]]


def test_parallelism_keeps_every_core_busy_and_one_file_is_one_partition():
    assert len(pack_files([10 * MB] * 8, parallelism=8)) == 8  # 112 MB / 8 cores: 1 file each
    assert pack_files([5], parallelism=4) == [[0]]
    assert pack_files([], parallelism=4) == []
    assert len(pack_files([1 * MB] * 10, parallelism=2, max_bytes=10 * MB)) == 5
