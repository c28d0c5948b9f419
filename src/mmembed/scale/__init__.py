"""Scale-out indexing on Ray Data (``pip install 'mmembed[ray]'``): decode in Ray tasks, embed in a pool of
encoder actors, write to a Chroma server. See docs/scale-out.md."""

from .cluster import DECODE_RESERVE_CPUS, DECODE_TASK_CPUS, Cluster, Plan, RayUnavailableError, connect, plan_resources
from .pipeline import RayIndexError, RayIndexResult, index_with_ray, list_sources

__all__ = ["DECODE_RESERVE_CPUS", "DECODE_TASK_CPUS", "Cluster", "Plan", "RayIndexError", "RayIndexResult",
           "RayUnavailableError", "connect", "index_with_ray", "list_sources", "plan_resources"]
