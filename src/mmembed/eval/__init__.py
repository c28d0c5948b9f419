"""Evaluation: tie-aware ranking metrics, datasets built from registry packages, and the runner behind
``mmembed eval``.

    from mmembed.eval import load_dataset, evaluate, format_table
    results = evaluate(load_dataset("tuxpaint"), "default", reranker="default")
    print(format_table(results))
"""

from .datasets import DatasetError, EvalDataset, Pool, Subset, available_datasets, load_dataset
from .metrics import METRIC_NAMES, mrr_at_k, ndcg_at_k, per_query_metrics, recall_at_k, retrieval_metrics
from .runner import DenseIndex, Result, evaluate, format_table, results_json

__all__ = [
    "METRIC_NAMES",
    "DatasetError",
    "DenseIndex",
    "EvalDataset",
    "Pool",
    "Result",
    "Subset",
    "available_datasets",
    "evaluate",
    "format_table",
    "load_dataset",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query_metrics",
    "recall_at_k",
    "results_json",
    "retrieval_metrics",
]
