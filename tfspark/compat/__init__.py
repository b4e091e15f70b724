"""Compatibility layers that run other projects' programs on tfspark.

* :mod:`tfspark.compat.tensorflowonspark` -- TensorFlowOnSpark 2.x programs, unchanged but for
  their import line.
"""
