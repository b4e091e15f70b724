"""Driver-side checks that fail fast, before anything waits on the cluster.

Each check raises :class:`~tfspark.errors.PreflightError` with a message that says what to change.
Reads Spark's configuration and scheduler state; starts nothing.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from tfspark import constants
from tfspark.errors import PreflightError
from tfspark._strategies.base import for_job_names
from tfspark.roles import PS, Role, assign_roles, num_training_nodes

logger = logging.getLogger(__name__)


def check_arguments(num_executors: Any, num_ps: Any, master_node: Any, eval_node: Any,
                    reservation_timeout: Any, env: Any, input_mode: Any,
                    valid_input_modes: tuple) -> List[Role]:
    """Validate ``TFCluster.run``'s arguments; return the roles they describe."""
    for name, value in (("num_executors", num_executors), ("num_ps", num_ps)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise PreflightError(f"{name} must be an int, got {value!r}")
    if num_executors < 1:
        raise PreflightError(f"num_executors must be >= 1, got {num_executors}")
    if num_ps < 0:
        raise PreflightError(f"num_ps must be >= 0, got {num_ps}")
    if master_node not in (None, "chief"):
        raise PreflightError(f"master_node must be None or 'chief', got {master_node!r}")
    if num_ps > 0 and master_node is None:
        raise PreflightError(
            f"num_ps={num_ps} needs a chief to coordinate ParameterServerStrategy: pass "
            "master_node='chief' (or num_ps=0 for MultiWorkerMirroredStrategy)")
    if not isinstance(eval_node, bool):
        raise PreflightError(f"eval_node must be True or False, got {eval_node!r}")
    if not isinstance(reservation_timeout, (int, float)) or reservation_timeout <= 0:
        raise PreflightError(f"reservation_timeout must be a positive number of seconds, "
                             f"got {reservation_timeout!r}")
    if input_mode not in valid_input_modes:
        raise PreflightError(f"input_mode must be one of {list(valid_input_modes)}, "
                             f"got {input_mode!r}")
    check_env(env or {}, num_ps)
    try:
        return assign_roles(num_executors, num_ps, chief=master_node == "chief",
                            evaluator=eval_node)
    except ValueError as e:
        raise PreflightError(f"{e}: raise num_executors or lower num_ps/eval_node") from None


def check_elastic(min_workers: Any, slot_wait: Any, batch_policy: Any,
                  roles: List[Role]) -> None:
    """``min_workers``, ``slot_wait`` and ``batch_policy`` of ``TFCluster.run``."""
    if batch_policy not in ("global", "per_worker"):
        raise PreflightError(f"batch_policy must be 'global' or 'per_worker', got "
                             f"{batch_policy!r}")
    if isinstance(slot_wait, bool) or not isinstance(slot_wait, (int, float)) or slot_wait < 0:
        raise PreflightError(f"slot_wait must be a number of seconds >= 0, got {slot_wait!r}")
    if min_workers is None:
        return
    training = num_training_nodes(roles)
    if isinstance(min_workers, bool) or not isinstance(min_workers, int) or not (
            1 <= min_workers <= training):
        raise PreflightError(f"min_workers must be an int from 1 to the {training} training "
                             f"nodes (chief + workers), got {min_workers!r}")
    if any(r.job_name == PS for r in roles):
        raise PreflightError(
            "min_workers restarts a MultiWorkerMirroredStrategy cluster on fewer workers; "
            "under ParameterServerStrategy (num_ps > 0) a lost worker's server restarts in "
            "place and a lost parameter server or chief restarts the whole cluster")


def check_env(env: Mapping[str, Any], num_ps: int) -> None:
    """``env`` must map str to str, and must not pick Keras 3 where it cannot work."""
    if not isinstance(env, Mapping):
        raise PreflightError(f"env must be a dict of environment variables, got {type(env)}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise PreflightError(f"env must map str to str; {key!r}: {value!r} is not")
    if constants.TF_CONFIG in env:
        raise PreflightError("env must not set TF_CONFIG: tfspark builds it for every node")
    if not constants.is_true(env.get(constants.TF_USE_LEGACY_KERAS,
                                     constants.DEFAULT_LEGACY_KERAS)):
        fatal, problem = for_job_names({PS} if num_ps > 0 else set()).keras3_problem()
        if fatal:
            raise PreflightError(problem)
        logger.warning(problem)


def check_pickles(dumps: Callable[[Any], bytes], main_fun: Any, args: Any) -> bytes:
    """Pickle ``(main_fun, args)`` for the nodes, or say which one cannot be shipped."""
    if not callable(main_fun):
        raise PreflightError(f"main_fun must be callable as main_fun(args, ctx), got {main_fun!r}")
    for name, value in (("main_fun", main_fun), ("args", args)):
        try:
            dumps(value)
        except Exception as e:
            raise PreflightError(f"{name} cannot be pickled to ship it to the executors: "
                                 f"{type(e).__name__}: {e}") from e
    return dumps((main_fun, args))


def check_dynamic_allocation(conf: Mapping[str, str]) -> None:
    if constants.is_true(conf.get("spark.dynamicAllocation.enabled", "false")):
        raise PreflightError(
            "spark.dynamicAllocation.enabled is true, but a TF cluster runs as one barrier stage, "
            "which Spark cannot schedule with dynamic allocation. Set "
            "spark.dynamicAllocation.enabled=false and size the application with "
            "spark.executor.instances (YARN/Kubernetes) or spark.cores.max (standalone).")


def expected_slots(conf: Mapping[str, str], master: str) -> Optional[int]:
    """Most concurrent tasks the application can ever have, where the settings tell; else None."""
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    local = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master)
    if local:
        import os
        threads = local.group(1) or "1"
        return (os.cpu_count() or 1) if threads == "*" else int(threads) // task_cpus
    local_cluster = re.fullmatch(r"local-cluster\[(\d+),\s*(\d+),\s*(\d+)\]", master)
    if local_cluster:
        return int(local_cluster.group(1)) * (int(local_cluster.group(2)) // task_cpus)
    if "spark.executor.instances" in conf and "spark.executor.cores" in conf:
        return int(conf["spark.executor.instances"]) * (
            int(conf["spark.executor.cores"]) // task_cpus)
    if master == "yarn" or master.startswith("k8s://"):  # Spark's defaults there: 2 x 1 core
        return int(conf.get("spark.executor.instances", "2")) * (
            int(conf.get("spark.executor.cores", "1")) // task_cpus)
    if master.startswith("spark://") and "spark.cores.max" in conf:
        return int(conf["spark.cores.max"]) // task_cpus
    return None


def auto_feed_mode(conf: Mapping[str, str], master: str, nodes: int,
                   granted_cores: Callable[[], Optional[int]]) -> Tuple[str, str]:
    """What ``feed_mode="auto"`` becomes for ``nodes`` TF nodes, and why: ``"job"`` when the
    application will have a task slot beside the nodes' for a feeding job, else ``"stage"``.

    Decided from what the application *will* have -- its settings, or on a standalone cluster
    without ``spark.cores.max`` the cores the master granted it (``granted_cores``) -- never
    from the executors registered so far: those arrive one by one, so a count taken while they
    start would make the same program feed one way or the other depending on timing. Where
    nothing says, ``"stage"``, which needs no slot beyond the nodes'.
    """
    cap = expected_slots(conf, master)
    source = f"its settings give the application {cap} task slots"
    if cap is None:
        cores = granted_cores()
        if cores:
            cap = cores // int(conf.get("spark.task.cpus", "1"))
            source = f"the standalone master granted the application {cores} cores ({cap} slots)"
    if cap is None:
        return "stage", (f"nothing tells how many task slots the application ({master}) will "
                         "have (set spark.cores.max, or spark.executor.instances and "
                         "spark.executor.cores), so the TF nodes' own stage takes the data")
    if cap > nodes:
        return "job", f"{source}: {cap - nodes} beside the {nodes} TF nodes for feeding jobs"
    return "stage", f"{source}: none beside the {nodes} TF nodes for a feeding job"


def wait_for_slots(nodes: int, conf: Mapping[str, str], master: str,
                   current_slots: Callable[[], Optional[int]], timeout: float,
                   feeding: bool = False,
                   current_executors: Optional[Callable[[], Optional[int]]] = None,
                   requests: Optional[Mapping[str, float]] = None) -> None:
    """Wait until Spark has a task slot for each of the ``nodes`` TF nodes (and, with
    ``feeding``, one more for the Spark job that feeds them), or raise saying what is missing.

    Fails at once when the settings cap the application below that; otherwise waits for executors to
    register, up to ``timeout`` (``reservation_timeout``) when the settings promise enough slots, or
    up to ``SLOT_WAIT_SECS`` when they say nothing. On YARN the error says how many executors were
    granted, the container size asked for and what the ResourceManager has free (see
    :mod:`tfspark._driver.yarn`). Where Spark cannot say how many slots there are (Spark Connect),
    only the settings are checked; ``reservation_timeout`` bounds the rest.
    """
    needed = nodes + int(feeding)
    cap = expected_profile_slots(requests, conf) if requests else expected_slots(conf, master)
    have = current_slots()
    if have is None:
        if cap is None or cap >= needed:
            return
        have = 0
    elif have >= needed:
        return
    started = time.monotonic()
    if cap is None or cap >= needed:
        limit = timeout if cap is not None else min(timeout, constants.SLOT_WAIT_SECS)
        deadline = started + limit
        while have < needed and time.monotonic() < deadline:
            time.sleep(0.5)
            have = current_slots()
        if have >= needed:
            return
    why = f"num_executors={nodes}, one barrier task per node" + (
        ", plus one for the Spark job that feeds them (InputMode.SPARK)" if feeding else "") + (
        f", each with {', '.join(f'{v:g} {k}' for k, v in requests.items())}" if requests
        else "")
    text = (f"The TF cluster needs {needed} task slots ({why}), but the Spark application "
            f"({master}) has {max(have, 0)} task slots")
    if master == "yarn" and current_executors is not None and (cap is None or cap >= needed):
        from tfspark._driver.yarn import shortfall
        waited = time.monotonic() - started
        raise PreflightError(f"{text}. {shortfall(conf, current_executors(), waited)}")
    raise PreflightError(
        text + (f" and its settings allow at most {cap}" if cap is not None and cap < needed
                else "")
        + ". Lower num_executors, or give the application more executors or cores "
        "(spark.executor.instances, spark.executor.cores, spark.cores.max; task slots = "
        "executor cores / spark.task.cpus).")


def check_resources(resources: Any, conf: Mapping[str, str], master: str) -> Dict[str, float]:
    """``TFCluster.run(resources=...)``: what each TF node's task asks for (``cpus`` and custom
    resources such as ``gpu``), checked against what the executors are given. Returns the
    requests; raises :class:`PreflightError` for what cannot be scheduled."""
    if not isinstance(resources, Mapping) or not resources:
        raise PreflightError(f"resources must be a dict such as {{'gpu': 1, 'cpus': 2}}, got "
                             f"{resources!r}")
    requests: Dict[str, float] = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or isinstance(amount, bool) or not isinstance(
                amount, (int, float)) or amount <= 0:
            raise PreflightError(f"resources: {name!r}: {amount!r} is not a resource name with "
                                 "a positive amount")
        if name == "cpus" and int(amount) != amount:
            raise PreflightError(f"resources: cpus must be a whole number, got {amount}")
        if amount > 1 and int(amount) != amount:
            raise PreflightError(f"resources: {name} {amount}: a task takes a fraction of one "
                                 "unit (e.g. 0.5) or whole units")
        requests[name] = amount
    if master.startswith("local"):
        raise PreflightError(f"resources= asks Spark for a stage with its own task resources "
                             f"(stage-level scheduling), which Spark runs on standalone, YARN "
                             f"and Kubernetes, not in {master}")
    cores = conf.get("spark.executor.cores")
    if "cpus" in requests and cores is not None and requests["cpus"] > int(cores):
        raise PreflightError(f"resources asks {int(requests['cpus'])} cpus per TF node, but "
                             f"executors have {cores} cores (spark.executor.cores)")
    for name, amount in requests.items():
        if name == "cpus":
            continue
        key = f"spark.executor.resource.{name}.amount"
        have = float(conf.get(key, 0) or 0)
        if have <= 0:
            raise PreflightError(
                f"resources asks {amount:g} {name} per TF node, but the executors have no "
                f"{name} ({key} is not set). Give executors {name}s: {key}=N with "
                f"spark.executor.resource.{name}.discoveryScript (on standalone the workers "
                f"also need spark.worker.resource.{name}.amount and .discoveryScript).")
        if amount > have:
            raise PreflightError(f"resources asks {amount:g} {name} per TF node, but each "
                                 f"executor has {have:g} ({key}): no executor can run a node")
    return requests


def expected_profile_slots(requests: Mapping[str, float], conf: Mapping[str, str]
                           ) -> Optional[int]:
    """Most TF node tasks with ``requests`` each that the application's executors can run at
    once, where the settings tell (executor count and sizes); else None."""
    instances, cores = conf.get("spark.executor.instances"), conf.get("spark.executor.cores")
    if instances is None or cores is None:
        return None
    per_executor = int(cores) // int(requests.get("cpus", conf.get("spark.task.cpus", 1)))
    for name, amount in requests.items():
        if name != "cpus":
            have = float(conf.get(f"spark.executor.resource.{name}.amount", 0) or 0)
            per_executor = min(per_executor, int(have // amount) if amount >= 1 else int(
                round(have / amount)))
    return int(instances) * per_executor
