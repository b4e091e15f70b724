"""Which TF role each Spark task plays, and the cluster spec / ``TF_CONFIG`` that follow.

Pure functions only: no I/O, no Spark, no TensorFlow, so every rule here has a fast unit test.

Order of roles over the barrier stage's partitions: parameter servers first, then the chief,
then the workers, then the evaluator (last, and outside the cluster spec as TF expects).
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

PS, CHIEF, WORKER, EVALUATOR = "ps", "chief", "worker", "evaluator"


class InputMode(enum.IntEnum):
    """How training data reaches TF: read by TF itself, or fed from Spark RDDs/DataFrames."""

    TENSORFLOW = 0
    SPARK = 1


#: Roles whose nodes run training steps (and so receive data, and finish on their own).
TRAINING_ROLES = (CHIEF, WORKER)


@dataclass(frozen=True)
class Role:
    """One node's place in the TF cluster."""

    job_name: str
    task_index: int
    worker_num: int  # the Spark partition index, unique over the whole stage

    @property
    def label(self) -> str:
        return f"{self.job_name}:{self.task_index}"


def assign_roles(num_executors: int, num_ps: int = 0, chief: bool = False,
                 evaluator: bool = False) -> List[Role]:
    """Roles of partitions ``0..num_executors-1``; raises ``ValueError`` on impossible counts."""
    num_workers = num_executors - num_ps - int(chief) - int(evaluator)
    if num_ps < 0:
        raise ValueError(f"num_ps must be >= 0, got {num_ps}")
    if num_workers < 0 or num_workers + int(chief) == 0:
        raise ValueError(
            f"num_executors={num_executors} leaves no chief or worker after {num_ps} ps"
            f"{' + 1 evaluator' if evaluator else ''}{' + 1 chief' if chief else ''}")
    names = ([PS] * num_ps + [CHIEF] * int(chief) + [WORKER] * num_workers
             + [EVALUATOR] * int(evaluator))
    seen: Dict[str, int] = {}
    roles = []
    for worker_num, name in enumerate(names):
        roles.append(Role(name, seen.get(name, 0), worker_num))
        seen[name] = seen.get(name, 0) + 1
    return roles


def with_fewer_workers(roles: Sequence[Role], slots: int) -> Optional[List[Role]]:
    """The roles of ``roles``' cluster on ``slots`` task slots: the parameter servers, chief and
    evaluator kept, workers dropped from the last (None if even no worker does not fit)."""
    count = {name: sum(1 for r in roles if r.job_name == name) for name in (PS, CHIEF, WORKER,
                                                                              EVALUATOR)}
    fixed = count[PS] + count[CHIEF] + count[EVALUATOR]
    workers = min(count[WORKER], slots - fixed)
    if workers < 0 or workers + count[CHIEF] == 0:
        return None
    return assign_roles(fixed + workers, count[PS], bool(count[CHIEF]), bool(count[EVALUATOR]))


def cluster_spec(roles: Sequence[Role], addresses: Sequence[str]) -> Dict[str, List[str]]:
    """The TF cluster spec (``{"worker": ["host:port", ...], ...}``) without the evaluator."""
    if len(roles) != len(addresses):
        raise ValueError(f"{len(roles)} roles but {len(addresses)} addresses")
    spec: Dict[str, List[str]] = {}
    for role, address in zip(roles, addresses):
        if role.job_name != EVALUATOR:
            spec.setdefault(role.job_name, []).append(address)
    return spec


def tf_config(spec: Dict[str, List[str]], role: Role) -> str:
    """The ``TF_CONFIG`` JSON for ``role`` in ``spec``."""
    return json.dumps({"cluster": spec, "task": {"type": role.job_name, "index": role.task_index}},
                      sort_keys=True)


def is_chief(role: Role, job_names) -> bool:
    """Whether ``role`` is the node that writes checkpoints and exports in a cluster with these
    job names: the chief, else worker 0."""
    if CHIEF in job_names:
        return role.job_name == CHIEF
    return role.job_name == WORKER and role.task_index == 0


def num_training_nodes(roles: Sequence[Role]) -> int:
    """How many nodes run training steps (chief + workers): the number to shard data over."""
    return sum(1 for r in roles if r.job_name in TRAINING_ROLES)
