"""Names shared by the feeding Spark tasks (:mod:`tfspark.spark_feed`) and the nodes'
receivers (:mod:`tfspark.feed`), kept apart so neither side imports the other."""

#: What a data connection is for: training rows to spill, or inference rows to answer.
TRAIN, INFERENCE = "train", "inference"
