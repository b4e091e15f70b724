"""The TFRecord format behind :mod:`tfspark.tfrecord` and :mod:`tfspark.data`.

``codec`` (framing, CRCs, tf.train.Example encoding and decoding, byte for byte TF's),
``schema`` (Spark types <-> TFRecord features, partition columns <-> folders), ``read``
(TFRecord files -> a DataFrame: listing, packing into partitions, decoding).

Never imports the node side (``_node``, ``_feed``, ``_strategies``).
"""
