"""The data model every evaluation set is built into, and the helpers the builders share (sampling,
caption normalisation: the one rule under which two captions count as the same)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import MMEmbedError


class DatasetError(MMEmbedError):
    """An evaluation set could not be built (missing files, malformed rows, unknown name)."""


# ---- data model ----------------------------------------------------------------------------------------
@dataclass
class Pool:
    """The documents one or more subsets search.

    ``key`` identifies the pool's content: subsets (and datasets) with the same key share one set of
    document embeddings per encoder. ``texts`` is set when every document is plain text, so lexical
    baselines (TF-IDF, BM25) can score it.
    """

    key: str
    items: list[Any]
    ids: list[str]
    texts: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.items) != len(self.ids):
            raise DatasetError(f"pool {self.key!r}: {len(self.items)} items but {len(self.ids)} ids")
        if not self.items:
            raise DatasetError(f"pool {self.key!r} is empty")

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Subset:
    """Queries against a pool: one row of the results table.

    ``task`` names the instruction (``mmembed tasks``) the queries are encoded with; ``query_texts`` is set
    when every query is plain text (for lexical baselines).
    """

    name: str
    queries: list[Any]
    relevant: list[tuple[int, ...]]
    pool: Pool
    task: str | None
    query_ids: list[str] = field(default_factory=list)
    query_texts: list[str] | None = None

    def __post_init__(self) -> None:
        if len(self.queries) != len(self.relevant):
            raise DatasetError(f"subset {self.name!r}: {len(self.queries)} queries but "
                               f"{len(self.relevant)} relevance lists")
        if not self.query_ids:
            self.query_ids = [str(i) for i in range(len(self.queries))]
        n = len(self.pool)
        for q, rel in enumerate(self.relevant):
            if not rel:
                raise DatasetError(f"subset {self.name!r}: query {self.query_ids[q]!r} has no relevant document")
            if min(rel) < 0 or max(rel) >= n:
                raise DatasetError(f"subset {self.name!r}: query {self.query_ids[q]!r} points outside the pool")

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class EvalDataset:
    name: str
    subsets: list[Subset]
    description: str = ""
    source: str = ""
    #: lexical baselines that make sense beside the encoder (text-only subsets), e.g. ("tfidf", "bm25")
    baselines: tuple[str, ...] = ()


# ---- helpers -------------------------------------------------------------------------------------------
def sample_indices(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """All of ``range(n)``, or a fixed random sample of ``limit`` of them in ascending order."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise DatasetError(f"limit must be >= 1, got {limit}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=limit, replace=False))


def normalize_caption(text: str) -> str:
    """The key under which captions count as identical: case-folded, spaces collapsed, end punctuation off."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".!。|").strip().casefold()


def _group_queries(texts: Sequence[str], targets: Sequence[int]) -> tuple[list[str], list[tuple[int, ...]]]:
    """Merge equal (normalised) query texts; each keeps every target it was paired with."""
    order: dict[str, list[int]] = {}
    shown: dict[str, str] = {}
    for text, t in zip(texts, targets):
        key = normalize_caption(text)
        order.setdefault(key, []).append(t)
        shown.setdefault(key, text.strip())
    return [shown[k] for k in order], [tuple(sorted(set(v))) for v in order.values()]


def _content_tag(parts: Sequence[object]) -> str:
    """A short digest of what a pool holds (its ids and locations), so equal pools share embeddings."""
    digest = hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{len(parts)}:{digest[:16]}"
