"""The questions every part of tfspark asks about the cluster's distribution strategy.

The driver (which nodes end on their own, which get data), a node's task (its environment,
whether it only serves, whether its process restarts alone) and its process (where fed rows
spill, in which format) ask :func:`for_job_names` instead of testing role names: all that
differs between strategies is answered by one small object per strategy
(:mod:`~tfspark._strategies.mwms`, :mod:`~tfspark._strategies.pss`).
"""
from __future__ import annotations

from typing import Collection, Dict, List, Optional, Sequence, Tuple

from tfspark.roles import PS, TRAINING_ROLES, Role


class StrategyBackend:
    """What one TF distribution strategy needs from tfspark (answers are pure)."""

    #: its name in messages
    name: str = ""
    #: roles whose nodes run ``main_fun`` and end on their own when training is done; the
    #: others serve until the driver stops them
    finishers: Tuple[str, ...] = TRAINING_ROLES
    #: roles whose nodes get a share of the training data, in share order
    data_roles: Tuple[str, ...] = TRAINING_ROLES
    #: how a node that only serves spills fed rows ("arrow" files of its own; "tfrecord" files
    #: its strategy's dataset_fn reads)
    serving_spill_format: str = "arrow"
    #: whether its nodes copy ``TFCluster.run(stage_files=...)`` to local disk before training
    stages_files: bool = False

    def keras3_problem(self) -> Tuple[bool, str]:
        """(fatal, what to say) when the nodes would run Keras 3 (TF_USE_LEGACY_KERAS off)."""
        return False, ("tfspark: TF nodes will run Keras 3, whose model.fit fails under "
                       "MultiWorkerMirroredStrategy; use it with custom training loops only.")

    def serves_only(self, job_name: str) -> bool:
        """Whether a node of ``job_name`` only runs a TF server (no ``main_fun``)."""
        return False

    def restarts_in_place(self, job_name: str) -> bool:
        """Whether a node of ``job_name`` whose process died restarts alone, the others going
        on (else the whole cluster restarts from its backup)."""
        return False

    def survives_loss(self, job_name: str) -> bool:
        """Whether training goes on when a node of ``job_name`` is lost for good (its executor
        gone), on the others of its job: then each node runs as its own Spark job, so that
        Spark retries the lost one's task alone (see :mod:`tfspark._driver.node_jobs`)."""
        return False

    def node_env(self) -> Dict[str, str]:
        """Environment every node's process gets."""
        return {}

    def data_nodes(self, roles: Sequence[Role]) -> List[Role]:
        """The nodes that get a share of the training data, in share order: share ``i`` (fed
        rows, TFRecord files ``j`` with ``j % n == i``) goes to ``data_nodes(roles)[i]``."""
        return [r for r in roles if r.job_name in self.data_roles]

    def size(self, roles: Sequence[Role]) -> int:
        """How many nodes train on data (``cluster.attempts``/``history``'s ``workers``)."""
        return len(self.data_nodes(roles))

    def data_index(self, roles: Sequence[Role], role: Role) -> Optional[int]:
        """``role``'s share index (see :meth:`data_nodes`), or None if it gets no share."""
        nodes = self.data_nodes(roles)
        return nodes.index(role) if role in nodes else None

    def __repr__(self) -> str:
        return f"<{self.name}>"


def for_job_names(job_names: Collection[str]) -> StrategyBackend:
    """The strategy of a cluster with these job names: ParameterServerStrategy with parameter
    servers, else MultiWorkerMirroredStrategy (or no strategy, which the same answers fit)."""
    from tfspark._strategies.mwms import MIRRORED
    from tfspark._strategies.pss import PARAMETER_SERVER
    return PARAMETER_SERVER if PS in job_names else MIRRORED


def for_roles(roles: Sequence[Role]) -> StrategyBackend:
    return for_job_names({r.job_name for r in roles})
