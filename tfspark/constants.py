"""Names of the environment variables and settings tfspark reads or sets, with their defaults."""

#: TensorFlow reads the cluster layout and this node's role from it.
TF_CONFIG = "TF_CONFIG"

#: Set to "1" before TF is imported, TF 2.16+ uses tf-keras (Keras 2) as ``tf.keras``. Keras 3
#: cannot ``model.fit`` under MultiWorkerMirroredStrategy nor ParameterServerStrategy, so tfspark
#: sets it on every node unless the user's ``env`` gives another value.
TF_USE_LEGACY_KERAS = "TF_USE_LEGACY_KERAS"
DEFAULT_LEGACY_KERAS = "1"

#: TF's C++ log threshold (0 all .. 3 fatal only). Unless ``TFCluster.run(verbose=True)`` or the
#: user's ``env`` says otherwise, nodes run with 2 (errors only): the INFO/WARNING start-up lines
#: (oneDNN, CUDA probing, coordination service) are noise to most users.
TF_CPP_MIN_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_CPP_LOG_LEVEL = "2"

#: Under Spark Connect: the address of this client that executors should dial to stream node
#: output, progress and errors live (default: this machine's address on the route to the
#: Connect server), and how long a probe task tries it before tfspark runs nodes detached.
CLIENT_HOST = "TFSPARK_CLIENT_HOST"
CLIENT_PROBE_SECS = 5.0

#: Lines of each node's output kept for the driver when the node runs detached (no live
#: channel): shown when the TF cluster's job ends.
DETACHED_OUTPUT_LINES = 200

#: Detached nodes: seconds the evaluator may keep running after training ends.
DETACHED_EVALUATOR_GRACE_SECS = 30.0

#: Seconds between two progress lines within an epoch when the driver's output is not a terminal.
PROGRESS_LINE_SECS = 30.0
PROGRESS_LINE_SECS_ENV = "TFSPARK_PROGRESS_LINE_SECS"  # the driver's environment overrides it

#: Seconds a node's process gets to exit after SIGTERM before it is killed.
NODE_STOP_GRACE_SECS = 10.0
#: When Spark reports a lost executor before the driver saw a node's connection drop, how long
#: it waits for that drop (which names the node) before failing the attempt with Spark's words.
LOST_EXECUTOR_REPORT_SECS = 5.0

#: Seconds between checks, in a node's process, that its Spark task is still alive.
PARENT_WATCH_INTERVAL_SECS = 1.0

#: Seconds between checks, in a node's task, whether its process has exited (or must stop).
NODE_POLL_SECS = 0.05

#: A node's process imports TensorFlow while it waits for the nodes to meet; "0" in
#: ``TFCluster.run(env=...)`` turns that off (for a main_fun that never imports TensorFlow).
PRELOAD_TENSORFLOW = "TFSPARK_PRELOAD_TENSORFLOW"

#: How many of a node's last output lines the driver keeps for error messages.
OUTPUT_TAIL_LINES = 40

#: Upper bound, in seconds, on waiting for task slots when Spark cannot say how many will come.
SLOT_WAIT_SECS = 20.0


def is_true(value: object) -> bool:
    """Environment-style truth: "1", "true", "yes", "on" (any case)."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")

#: Set on a node's process to the GPUs Spark assigned to its task.
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
#: Set (unless the user's env sets it) on a node with GPUs: TF allocates GPU memory as needed,
#: so nodes sharing a GPU's host do not fight over its memory.
TF_FORCE_GPU_ALLOW_GROWTH = "TF_FORCE_GPU_ALLOW_GROWTH"

#: Set in a node's process: where tfspark's own temporary folders go there (HDFS mirrors and
#: downloads), inside the task's private directory, so they go with it however the node ends.
NODE_SCRATCH_ENV = "TFSPARK_NODE_SCRATCH"

#: How long a rejoining ParameterServerStrategy worker waits for its share of the Spark-fed rows,
#: sent again, before its TF server starts (the driver stops it sooner if the re-feed fails).
REFEED_TIMEOUT_SECS = 600.0
