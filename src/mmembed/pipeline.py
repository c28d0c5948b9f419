"""Retrieve -> rerank: the one code path the CLI, LangChain and LlamaIndex adapters call.

(Placeholder until the rerankers land: retrieval only; ``reranker`` must be None.)
"""

from __future__ import annotations

from typing import Any

from .errors import InputError
from .store import Hit, Store


def retrieve(store: Store, query: Any, *, k: int = 10, fetch_k: int | None = None, task: str | None = None,
             instruction: str | None = None, reranker: Any = None, where: Any = None) -> list[Hit]:
    if reranker is not None:
        raise InputError("reranking is not available yet")
    return store.query(query, k=k, task=task, instruction=instruction, where=where)
