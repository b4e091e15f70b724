#!/usr/bin/env bash
# Single-node HDFS + YARN for tfspark's tests (see tfspark/testing/hadoop.py).
#
#   conf/hadoop/cluster.sh start  [--dir DIR] [--no-yarn]   # prints `export HADOOP_CONF_DIR=...`
#   conf/hadoop/cluster.sh status [--dir DIR]
#   conf/hadoop/cluster.sh stop   [--dir DIR]
#   conf/hadoop/cluster.sh fetch                            # only download the jars (Maven)
#
# Needs java and mvn; jars are cached in $TFSPARK_HADOOP_HOME (~/.cache/tfspark/hadoop-3.5.0).
# Python: $PYTHON, else the repository's .venv, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m tfspark.testing.hadoop "$@"
