"""The Encoder protocol every backend implements.

Backends implement one method, :meth:`Encoder._encode_batch`, on already-coerced items whose images are
decoded. Everything users touch -- coercion, task instructions, batching, progress bars, decoding errors
that name the input, L2 normalisation, float32 numpy output -- lives here once, so every backend behaves the
same (the sentence-transformers ``encode`` experience).

Long text, one rule for every backend: a model reads at most :attr:`Encoder.max_text_tokens` tokens of an
item's text (its window, counted by its own tokenizer, special tokens included). Text beyond it is
**truncated at encode time** -- the vector stands for the first ``max_text_tokens`` tokens; nothing is split
into several vectors, and a store keeps the whole text as the record's document. Each batch that cut
something logs one warning on the ``mmembed.encoders`` logger naming how many texts were cut and the window.
To index every part of a long text, split it into several documents before adding them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import logging

import numpy as np

from ..errors import InputError, describe
from ..images import DEFAULT_POLICY, ImagePolicy
from ..inputs import Interleaved, coerce_many, load_all
from ..instructions import resolve_instruction


truncation_logger = logging.getLogger("mmembed.encoders")


def _progress(total: int, show: bool | None, desc: str, batch_size: int):  # type: ignore[no-untyped-def]
    from ..progress import progress

    # a bar on a terminal for more than one batch; periodic lines when stderr is a log or a pipe
    return progress(total, desc, "item", show=show, min_total=batch_size, leave=False)


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """``batch_size`` if it is a positive int, else an InputError naming it (``"2"`` is not a batch size)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"{name} must be a positive integer, got {describe(batch_size)}")
    return batch_size


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder(ABC):
    """Embeds interleaved image-text inputs as queries (with a task instruction) or documents (without).

    Attributes:
        name: a stable identifier recorded on Chroma collections (a different name = a different space).
        dim: the embedding dimension.
        image_policy: how images are loaded (remote URLs off by default; see :class:`ImagePolicy`).
    """

    name: str = "encoder"
    dim: int = 0
    image_policy: ImagePolicy = DEFAULT_POLICY
    #: tokens of text the model reads per item (its window); longer text is truncated (see the module doc).
    #: ``None``: the backend states no limit.
    max_text_tokens: int | None = None

    # ---- public API --------------------------------------------------------------------------------
    def encode_queries(
        self,
        inputs: Iterable[Any] | Any,
        *,
        task: str | None = None,
        instruction: str | None = None,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed queries. ``task`` names a registered task (``mmembed tasks``); ``instruction`` is free text
        and wins over ``task``. Returns L2-normalised float32 ``(n, dim)``."""
        instr = resolve_instruction(task, instruction)
        return self._encode(inputs, instruction=instr, is_query=True, batch_size=batch_size,
                            show_progress=show_progress, what="query")

    def encode_documents(
        self,
        inputs: Iterable[Any] | Any,
        *,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed documents (never with an instruction). Returns L2-normalised float32 ``(n, dim)``."""
        return self._encode(inputs, instruction=None, is_query=False, batch_size=batch_size,
                            show_progress=show_progress, what="document")

    def info(self) -> dict[str, Any]:
        """What a store records about the encoder to refuse a mismatched one later."""
        return {"encoder": self.name, "dim": int(self.dim)}

    # ---- backend hook -------------------------------------------------------------------------------
    @abstractmethod
    def _encode_batch(self, items: Sequence[Interleaved], *, instruction: str | None, is_query: bool) -> Any:
        """Return an ``(len(items), dim)`` array or tensor (normalisation is done by the caller).

        Images in ``items`` are already decoded: use ``part.image`` (RGB PIL image).
        """

    def _length_key(self, item: Interleaved) -> int | None:
        """Optional cost of an item (e.g. its token count). When a backend returns numbers, ``_encode``
        batches items of similar cost together, longest first (less padding), and returns vectors in input
        order. ``None`` (the default) keeps the input order."""
        return None

    def _report_truncated(self, cut: int, total: int, window: int | None = None) -> None:
        """Backends call this once per batch with how many of its ``total`` texts they truncated."""
        if cut:
            truncation_logger.warning(
                "%d of %d texts in this batch are longer than the %s-token window of encoder %s and were "
                "truncated: their vectors cover the first %s tokens (stored documents keep the whole text; "
                "split long texts into several documents to index all of them)",
                cut, total, window or self.max_text_tokens, self.name, window or self.max_text_tokens)

    # ---- shared machinery ---------------------------------------------------------------------------
    def _encode(
        self,
        inputs: Iterable[Any] | Any,
        *,
        instruction: str | None,
        is_query: bool,
        batch_size: int,
        show_progress: bool | None,
        what: str,
    ) -> np.ndarray:
        check_batch_size(batch_size)
        if show_progress is not None and not isinstance(show_progress, bool):
            raise InputError(f"show_progress must be True, False or None, got {describe(show_progress)}")
        items = coerce_many(inputs, what=what)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        keys = [self._length_key(it) for it in items]
        order = list(range(len(items)))
        if all(k is not None for k in keys):
            order.sort(key=lambda i: -keys[i])  # type: ignore[operator]
        with _progress(len(items), show_progress, "encoding queries" if what == "query" else f"encoding {what}s", batch_size) as bar:
            for start in range(0, len(items), batch_size):
                idx = order[start : start + batch_size]
                batch = [items[i] for i in idx]
                preloaded = [[p.is_loaded for p in it.images] for it in batch]
                try:
                    for i, it in zip(idx, batch):  # errors name the item by its input position
                        load_all([it], self.image_policy, what=what, offset=i)
                    vecs = self._encode_batch(batch, instruction=instruction, is_query=is_query)
                finally:
                    # free decoded pixels we loaded ourselves; keep what the caller had loaded
                    for it, flags in zip(batch, preloaded):
                        for part, was_loaded in zip(it.images, flags):
                            if not was_loaded:
                                part.unload()
                vecs = _to_numpy(vecs)
                if vecs.shape != (len(batch), self.dim):
                    raise RuntimeError(
                        f"{type(self).__name__} returned shape {vecs.shape}, expected {(len(batch), self.dim)}"
                    )
                out[idx] = vecs
                bar.update(len(batch))
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def image_policy_from_kwargs(kwargs: dict[str, Any]) -> ImagePolicy:
    """Pop ``image_policy`` / ``allow_remote`` / ``allow_private_addresses`` from backend kwargs."""
    policy = kwargs.pop("image_policy", None) or DEFAULT_POLICY
    changes = {k: kwargs.pop(k) for k in ("allow_remote", "allow_private_addresses") if k in kwargs}
    return policy.with_(**changes) if changes else policy
