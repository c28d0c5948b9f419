"""Connecting to a Ray cluster (or starting a local one) and sharing its CPUs so a pipeline cannot starve.

Ray schedules by *logical* resources: an actor that asks for one CPU holds it for its whole life. On a
two-CPU cluster, two one-CPU encoder actors hold every CPU and the tasks that read and decode inputs wait
forever (measured with ray 2.60: such a pipeline stalled for 300 s; with four logical CPUs it finished in
3.7 s). :func:`plan_resources` therefore gives the encoder actors what is left after a fixed share for the
decode tasks, in fractions of a CPU when needed, and refuses a plan that leaves the decode tasks nothing.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, MMEmbedError

logger = logging.getLogger(__name__)

#: Logical CPUs one decode task asks for. Decoding is short and mostly I/O plus PIL; a quarter of a CPU lets
#: several run beside the encoder actors without holding real cores the actors need.
DECODE_TASK_CPUS = 0.25
#: Logical CPUs kept free of encoder actors for the decode tasks (two at a time at DECODE_TASK_CPUS).
DECODE_RESERVE_CPUS = 2 * DECODE_TASK_CPUS


#: Address of a cluster started for one run. Ray replaces "127.0.0.1" and "localhost" by the machine's network
#: address (so other machines could join); any other loopback address is kept. macOS and Windows configure
#: only 127.0.0.1, which Ray keeps there (it runs no multi-node clusters on them).
LOCAL_NODE_IP = "127.0.0.1" if sys.platform in ("darwin", "win32") else "127.0.0.2"


class RayUnavailableError(MMEmbedError):
    """Ray is not installed, or the cluster asked for cannot be reached."""


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayUnavailableError(
            "indexing on Ray needs the optional dependency: pip install 'mmembed[ray]' "
            f"({exc})") from exc
    return ray


@dataclass
class Cluster:
    """The Ray cluster a run uses, and whether this process started it (then it stops it when done)."""

    how: str  # "started" | "joined" | "reused"
    address: str
    cpus: float
    gpus: float
    owned: bool
    node_cpus: list[float] = field(default_factory=list)

    def describe(self) -> str:
        size = (f"{len(self.node_cpus)} nodes, " if len(self.node_cpus) > 1 else "") + f"{self.cpus:g} CPUs" + (f", {self.gpus:g} GPUs" if self.gpus else "")
        if self.how == "started":
            return f"started a local Ray cluster ({size}); it stops when indexing ends"
        if self.how == "reused":
            return f"using the Ray cluster this process is already connected to at {self.address} ({size})"
        return f"joined the Ray cluster at {self.address} ({size})"

    def shutdown(self) -> None:
        """Disconnect (and stop the cluster if this process started it)."""
        if self.how == "reused":
            return
        import ray

        ray.shutdown()


def connect(address: str | None = "auto", *, num_cpus: int | None = None, runtime_env: dict[str, Any] | None = None,
            node_ip_address: str | None = None, quiet: bool = True) -> Cluster:
    """Join or start a Ray cluster.

    ``address``: ``"auto"`` joins the cluster named by ``RAY_ADDRESS`` or one running on this machine
    (``ray start --head``), else starts a local one with ``num_cpus`` logical CPUs (default: this machine's
    CPU count); ``"local"`` always starts a local one; anything else (``HOST:PORT``, ``ray://...``) joins
    that cluster. A process already connected (``ray.init`` called by the user) keeps its connection.

    A cluster started here serves this run only, so it listens on a loopback address (``node_ip_address``,
    default :data:`LOCAL_NODE_IP`) rather than on the machine's network address, Ray's default.
    """
    ray = import_ray()
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return _describe(ray, "reused", owned=False)
    kwargs: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
    if quiet:
        kwargs.update(logging_level=logging.WARNING, configure_logging=True)
    if address not in (None, "auto", "local"):
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise RayUnavailableError(f"cannot join the Ray cluster at {address}: {exc}") from exc
        return _describe(ray, "joined", owned=False)
    if address != "local":
        env = os.environ.get("RAY_ADDRESS")
        try:
            ray.init(address=env or "auto", **kwargs)
            return _describe(ray, "joined", owned=False)
        except ConnectionError as exc:
            if env:
                raise RayUnavailableError(f"cannot join the Ray cluster named by RAY_ADDRESS={env}: {exc}") from exc
    cpus = num_cpus or os.cpu_count() or 1
    ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address=node_ip_address or LOCAL_NODE_IP, **kwargs)
    return _describe(ray, "started", owned=True)


def _describe(ray: Any, how: str, *, owned: bool) -> Cluster:
    res = ray.cluster_resources()
    nodes = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - only for the message
        address = "?"
    return Cluster(how=how, address=str(address), cpus=float(res.get("CPU", 0)), gpus=float(res.get("GPU", 0)),
                   owned=owned, node_cpus=nodes)


@dataclass
class Plan:
    """How many encoder actors, what each asks Ray for, and how many threads each runs."""

    concurrency: int
    actor_cpus: float
    actor_gpus: float
    threads: int
    decode_cpus: float = DECODE_TASK_CPUS

    def describe(self) -> str:
        gpus = f", {self.actor_gpus:g} GPU" if self.actor_gpus else ""
        return (f"{self.concurrency} encoder actor(s) x {self.actor_cpus:g} CPU{gpus}, {self.threads} thread(s) each; "
                f"decode tasks {self.decode_cpus:g} CPU each")


def plan_resources(cluster_cpus: float | Sequence[float], cluster_gpus: float = 0.0, *,
                   concurrency: int | None = None, num_cpus: float | None = None, num_gpus: float = 0.0,
                   threads: int | None = None) -> Plan:
    """Size the encoder actor pool for a cluster so decode tasks always have CPUs left.

    ``cluster_cpus``: the CPUs of each node (or one number for a single node). Defaults: one actor per GPU
    asked for when ``num_gpus`` is set, else one actor per two CPUs; each actor asks for an equal share of
    the CPUs left after :data:`DECODE_RESERVE_CPUS` (no more than it has threads, and small enough that
    ``concurrency`` actors fit on the nodes, since an actor cannot span two), and runs that many threads
    (rounded, at least one).
    """
    nodes = sorted([float(cluster_cpus)] if isinstance(cluster_cpus, (int, float)) else
                   [float(c) for c in cluster_cpus if c > 0], reverse=True)
    total = sum(nodes)
    if num_gpus < 0 or (num_cpus is not None and num_cpus <= 0):
        raise InputError("num_cpus must be positive and num_gpus non-negative")
    if num_gpus and cluster_gpus < num_gpus:
        raise InputError(f"each encoder actor asks for {num_gpus:g} GPU but the Ray cluster has {cluster_gpus:g}")
    spare = total - DECODE_RESERVE_CPUS
    if spare <= 0:
        raise InputError(f"the Ray cluster has {total:g} CPUs: too few to run decode tasks and encoder "
                         f"actors (at least {DECODE_RESERVE_CPUS + 0.25:g} needed)")
    if concurrency is None:
        if num_gpus:
            concurrency = max(1, int(cluster_gpus // num_gpus))
        else:
            concurrency = max(1, int(total // 2))
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InputError(f"concurrency must be a positive number of actors, got {concurrency!r}")
    if num_gpus and concurrency * num_gpus > cluster_gpus + 1e-9:
        raise InputError(f"{concurrency} actors x {num_gpus:g} GPU need more than the cluster's {cluster_gpus:g} GPUs")
    if num_cpus is None:
        share = spare / concurrency
        if threads is not None:
            share = min(share, float(threads))
        share = min(share, 8.0)
        # the largest share (a candidate is a node's CPUs split k ways) with which every actor fits on a node
        candidates = sorted({share} | {(c - r) / k for c in nodes for k in range(1, concurrency + 1)
                                       for r in (0.0, DECODE_TASK_CPUS, DECODE_RESERVE_CPUS) if (c - r) / k < share},
                            reverse=True)
        num_cpus = next((math.floor(x * 100) / 100 for x in candidates
                         if x >= 0.05 and _fits(nodes, math.floor(x * 100) / 100, concurrency)), None)
        if num_cpus is None:
            raise InputError(f"{concurrency} encoder actors cannot share the {spare:g} CPUs left for them on this "
                             "cluster: use fewer actors or a bigger cluster")
    elif concurrency * num_cpus > spare + 1e-9:
        raise InputError(
            f"{concurrency} encoder actors x {num_cpus:g} CPU would hold {concurrency * num_cpus:g} of the cluster's "
            f"{total:g} CPUs and leave less than {DECODE_RESERVE_CPUS:g} for the decode tasks, so the "
            "pipeline would stall waiting for a free CPU; use fewer actors or fewer CPUs per actor (fractions "
            "are allowed)")
    elif not _fits(nodes, num_cpus, concurrency):
        raise InputError(f"{concurrency} encoder actors x {num_cpus:g} CPU do not fit on the cluster's nodes "
                         f"({', '.join(f'{c:g}' for c in nodes)} CPUs): an actor cannot span two nodes")
    if threads is None:
        threads = max(1, int(num_cpus + 0.5))
    return Plan(concurrency=concurrency, actor_cpus=num_cpus, actor_gpus=float(num_gpus), threads=int(threads))


def _fits(nodes: Sequence[float], per_actor: float, concurrency: int) -> bool:
    """Whether ``concurrency`` actors of ``per_actor`` CPUs fit on the nodes (each on the node with the most
    free CPUs) and still leave the decode reserve free, with room for one decode task on some node."""
    free = sorted(nodes, reverse=True)
    for _ in range(concurrency):
        free.sort(reverse=True)
        if free[0] + 1e-9 < per_actor:
            return False
        free[0] -= per_actor
    return sum(free) + 1e-9 >= DECODE_RESERVE_CPUS and max(free) + 1e-9 >= DECODE_TASK_CPUS
