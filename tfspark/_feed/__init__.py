"""Spark's rows to ``tf.data`` on the nodes (``InputMode.SPARK``).

``protocol`` (what feeding tasks and nodes say to each other), ``spark_tasks`` (Spark tasks
streaming partitions as Arrow to the nodes), ``stage`` (a node's task handing the stage's own
input to the nodes), ``receiver`` (node side: streams -> spill files), ``spill`` (spilled rows
read back: batch plans, epoch order), ``dealing`` (which node gets which rows), ``datafeed``
(a node's feed state and the TensorFlowOnSpark ``next_batch`` API), ``datasets`` (the tf.data
builders), ``shares`` (a node's own share as a dataset), ``arrow_columns`` (rows <-> Arrow <->
numpy).

Knows no launcher: never imports ``_driver`` or ``_node``.
"""
