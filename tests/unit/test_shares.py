"""tfspark._feed.shares without a cluster: the node-share mark, and the warning for unmarked data."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def test_the_mark_survives_transformations():
    import tensorflow as tf

    from tfspark._feed import shares

    marked = shares.node_share(tf.data.Dataset.range(10).batch(2))
    assert shares.is_node_share(marked.map(lambda x: x * 2).prefetch(1))
    assert not shares.is_node_share(tf.data.Dataset.range(3))


def test_next_batch_users_get_the_rule_and_its_warning_without_node_share(capfd, monkeypatch):
    import tensorflow as tf

    from tfspark._feed import shares

    strategy_class = tf.distribute.MultiWorkerMirroredStrategy
    plain = strategy_class.experimental_distribute_dataset
    plain = getattr(plain, "__wrapped__", plain)  # as in a fresh node process
    monkeypatch.setattr(strategy_class, "experimental_distribute_dataset", plain)
    monkeypatch.setattr(shares, "_said", set())

    shares.note_rows_taken_directly("feed.next_batch()")
    assert strategy_class.experimental_distribute_dataset is not plain

    class TwoWorkers:
        num_replicas_in_sync = 2

    shares._warn_if_split(TwoWorkers())
    assert "trains each worker on only 1/2 of them" in capfd.readouterr().err
