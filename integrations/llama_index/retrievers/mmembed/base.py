"""``MMEmbedRetriever``: an mmembed :class:`~mmembed.Store` as a LlamaIndex retriever.

The query is the whole ``QueryBundle``: its text, its ``image_path``, or both composed into one
image+text query (what MM-Embed is trained for: "this picture, and this about it"), embedded with the task
instruction. Retrieval (and optional reranking) is :func:`mmembed.pipeline.retrieve`, the same code path as
the CLI and the LangChain adapter; this class converts the bundle in and the hits out.

Hits come back as ``NodeWithScore``: records with an image become ``ImageNode`` (``image_path`` for local
files, ``image_url`` for URLs; no base64 unless ``include_image_base64=True``), text-only records become
``TextNode``. Node ids are the store's record ids, so results can be deleted or updated by id.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Mapping
from typing import Any, List, Literal, Optional, Union

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode

from mmembed import Encoder, Hit, InputError, Reranker, Store, resolve_instruction
from mmembed._deprecation import renamed
from mmembed.errors import describe
from mmembed.images import read_source_bytes
from mmembed.pipeline import as_encoder, as_reranker, retrieve

from llama_index.embeddings.mmembed.convert import query_input


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {describe(value)}")
    return value


class MMEmbedRetriever(BaseRetriever):
    """Retrieve text, image and image+text records from an mmembed store with text and/or image queries.

    Args:
        store: an :class:`mmembed.Store`. Without one, a store is opened from ``path`` (embedded Chroma
            directory) or ``url``/``host``+``port`` (a Chroma server), ``collection`` and the encoder.
        model: the encoder's registry name or model directory (default: env ``MMEMBED_MODEL``, else
            ``"default"``); it must be the one the collection was built with. Loaded once per process.
        encoder: an already loaded :class:`mmembed.Encoder`; wins over ``model``.
        device, dtype: for loading ``model`` and a reranker given by name.
        similarity_top_k: how many nodes to return (LlamaIndex's name for the LangChain retriever's ``k``).
        task: a registered task (``mmembed tasks``) whose instruction steers the query, e.g.
            ``"text->image"``; ``instruction`` is free text and wins over ``task``.
        where: a Chroma metadata filter applied at search time.
        reranker: an :class:`mmembed.Reranker` (or registry name) to rerank ``fetch_k`` candidates.
        fetch_k: candidates fetched before reranking (default: the pipeline's choice).
        on_error: when reranking, ``"raise"`` on a stored record whose image cannot be read (naming it), or
            ``"skip"`` it (left out of the results and reported in a ``SkippedCandidatesWarning``).
        include_image_base64: also put each image's bytes, base64-encoded, on ``ImageNode.image`` (for
            multimodal LLMs that cannot read paths); off by default to keep nodes small.

    The names match the LangChain ``MMEmbedRetriever``; passing a name as ``encoder=`` still works, with a
    DeprecationWarning (use ``model=``).
    """

    def __init__(
        self,
        store: Optional[Store] = None,
        *,
        path: Optional[Union[str, os.PathLike]] = None,
        url: Optional[str] = None,
        host: Optional[str] = None,
        port: Optional[int] = None,
        collection: str = "mmembed",
        model: Optional[Union[str, os.PathLike]] = None,
        encoder: Optional[Encoder] = None,
        device: Optional[str] = None,
        dtype: Optional[str] = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        task: Optional[str] = None,
        instruction: Optional[str] = None,
        where: Optional[Mapping[str, Any]] = None,
        reranker: Any = None,
        fetch_k: Optional[int] = None,
        on_error: Literal["raise", "skip"] = "raise",
        include_image_base64: bool = False,
        callback_manager: Optional[CallbackManager] = None,
        verbose: bool = False,
    ) -> None:
        resolve_instruction(task, instruction)  # an unknown task fails now, not at the first query
        if isinstance(encoder, (str, os.PathLike)):
            model = renamed({"encoder": encoder}, "encoder", "model", model, where="MMEmbedRetriever", stacklevel=3)
            encoder = None
        elif encoder is not None and not isinstance(encoder, Encoder):
            raise InputError(f"encoder must be an mmembed.Encoder, got {describe(encoder)}; pass a name or path "
                             "as model instead")
        if device is None:
            device = os.environ.get("MMEMBED_DEVICE") or None
        self.device = device
        self.dtype = dtype
        if store is None:
            if encoder is None:
                encoder = as_encoder(model if model is not None else os.environ.get("MMEMBED_MODEL") or "default",
                                     device=device, dtype=dtype)
            # a retriever only reads: a mistyped path or collection is reported, not created empty
            store = Store(path, url=url, host=host, port=port, collection=collection, encoder=encoder,
                          create=False)
        elif not isinstance(store, Store):
            raise InputError(f"store must be an mmembed.Store, got {describe(store)}")
        self.store = store
        self.similarity_top_k = _positive_int(similarity_top_k, "similarity_top_k")
        self.fetch_k = None if fetch_k is None else _positive_int(fetch_k, "fetch_k")
        self.task = task
        self.instruction = instruction
        self.where = dict(where) if where else None
        self.reranker = reranker
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.include_image_base64 = include_image_base64
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedRetriever"

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        query = query_input(query_bundle, use_embedding_strs=True)
        hits = retrieve(
            self.store,
            query,
            k=_positive_int(self.similarity_top_k, "similarity_top_k"),
            fetch_k=self.fetch_k,
            task=self.task,
            instruction=self.instruction,
            reranker=self._get_reranker(),
            where=self.where,
            on_error=self.on_error,
        )
        return [self._node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)

    def _get_reranker(self) -> Optional[Reranker]:
        """The reranker (a name is loaded once per process with the store's encoder, by the pipeline)."""
        return as_reranker(self.reranker, self.store, device=self.device, dtype=self.dtype)

    # ---- hits -> nodes ---------------------------------------------------------------------------------
    def _node(self, hit: Hit) -> NodeWithScore:
        metadata = dict(hit.metadata)
        if len(hit.uris) > 1:
            metadata["image_uris"] = list(hit.uris)
        score = hit.score
        if hit.rerank_score is not None:
            metadata["retrieval_score"] = hit.score
            score = hit.rerank_score
        if hit.uris:
            uri = hit.uris[0]
            location = {"image_url": uri} if uri.startswith(("http://", "https://", "data:")) else {"image_path": uri}
            extra = {}
            if self.include_image_base64:
                data = read_source_bytes(uri, self.store.image_policy)
                extra["image"] = base64.b64encode(data).decode("ascii")
            node: TextNode = ImageNode(id_=hit.id, text=hit.document or "", metadata=metadata, **location, **extra)
        else:
            node = TextNode(id_=hit.id, text=hit.document or "", metadata=metadata)
        return NodeWithScore(node=node, score=float(score))
