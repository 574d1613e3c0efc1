"""The simulated two-node Ray cluster of the scale-out tests (``ray.cluster_utils.Cluster``).

A test module that needs it says ``cluster = two_node_cluster()``: one cluster per module
(a head and a worker node, one CPU each), so Ray's start-up stays out of every test that
does not ask for it.
"""

from __future__ import annotations

import pytest


def two_node_cluster():
    """A module-scoped fixture: the ``Cluster``, with this process connected to it."""

    @pytest.fixture(scope="module")
    def cluster():
        ray = pytest.importorskip("ray")
        from ray.cluster_utils import Cluster

        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        try:
            yield c
        finally:
            ray.shutdown()
            c.shutdown()

    return cluster


def alive_nodes() -> set[str]:
    """Ids of the cluster's live nodes."""
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}
