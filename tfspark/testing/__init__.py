"""Helpers for tfspark's own tests (a real single-node Hadoop cluster, see :mod:`.hadoop`)."""
