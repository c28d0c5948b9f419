"""``MMEmbedRerank``: an mmembed reranker as a LlamaIndex node postprocessor.

Scores each retrieved node *jointly* with the query -- text nodes by their text, ``ImageNode`` s by their
image (base64 ``image``, else ``image_path``, else ``image_url``) and text -- against a query that may be
text, an image (``QueryBundle.image_path``) or both. That is what the text-only cross-encoder rerankers
cannot do, and what the only other image-aware reranker does through a paid API.

Scoring, ranking and the rule for nodes that cannot be read are the engine's (:func:`mmembed.pipeline.rerank`,
shared with the LangChain ``MMEmbedRerank`` and both retrievers); this class converts nodes, sets
``NodeWithScore.score`` and reports to LlamaIndex's callbacks.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Literal, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from mmembed import InputError, Reranker, resolve_instruction
from mmembed._deprecation import renamed
from mmembed.errors import describe
from mmembed.pipeline import as_reranker, rerank

from llama_index.embeddings.mmembed.base import MMEmbedEmbedding
from llama_index.embeddings.mmembed.convert import node_input, query_input


class MMEmbedRerank(BaseNodePostprocessor):
    """Rerank text and image nodes against a text and/or image query with an mmembed reranker.

    Args:
        model: reranker registry name or local model directory for :func:`mmembed.load_reranker` (loaded once
            per process through :func:`mmembed.pipeline.as_reranker`).
        reranker: an already loaded :class:`mmembed.Reranker`; wins over ``model``.
        encoder: the first-stage :class:`mmembed.Encoder` (its name, or an ``MMEmbedEmbedding``); rerankers that re-embed candidates
            (the default one) score in its space, so pass the encoder the nodes were retrieved with.
        top_n: how many nodes to keep (best first; default 3, as the LangChain ``MMEmbedRerank``).
        task / instruction: steer the reranker like the retriever (``instruction`` wins).
        on_error: ``"raise"`` (default) stops at a node whose image cannot be read, naming it; ``"skip"``
            leaves such nodes out, reports them in a ``SkippedCandidatesWarning`` and reranks the rest.
        keep_retrieval_score: copy the retriever's score to ``metadata["retrieval_score"]``.
        metadata_mode: which metadata goes with a node's text (as for the embedding: ``EMBED``).
        device, dtype, model_kwargs: for loading ``model`` (``reranker_kwargs`` is the deprecated name of
            ``model_kwargs``).

    The names and defaults match the LangChain ``MMEmbedRerank``.

    Example:
        >>> engine = RetrieverQueryEngine.from_args(retriever, node_postprocessors=[MMEmbedRerank(top_n=3)])
    """

    model: str = Field(default="default", description="mmembed reranker: a registry name or a local model directory.")
    top_n: int = Field(default=3, ge=1, description="Number of nodes to keep, best first.")
    task: Optional[str] = Field(default=None, description="Registered task whose instruction steers the reranker.")
    instruction: Optional[str] = Field(default=None, description="Free-text reranking instruction; wins over `task`.")
    batch_size: int = Field(default=16, ge=1, description="Query-candidate pairs scored per model call.")
    on_error: Literal["raise", "skip"] = Field(
        default="raise",
        description="'raise' on a node that cannot be read (naming it), or 'skip' it with a warning.",
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retriever's score in node metadata under 'retrieval_score'."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Which node metadata is scored together with the node's text."
    )
    device: Optional[str] = Field(default=None, description="Torch device ('cpu', 'cuda', ...); None picks one.")
    dtype: Optional[str] = Field(default=None, description="Model dtype ('float32', 'bfloat16', ...); None picks one.")
    model_kwargs: Dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for mmembed.load_reranker."
    )

    _reranker: Reranker = PrivateAttr()

    def __init__(
        self,
        model: str = "default",
        *,
        reranker: Optional[Reranker] = None,
        encoder: Any = None,
        top_n: int = 3,
        model_kwargs: Optional[Dict[str, Any]] = None,
        callback_manager: Optional[CallbackManager] = None,
        **kwargs: Any,
    ) -> None:
        model_kwargs = renamed(kwargs, "reranker_kwargs", "model_kwargs", model_kwargs, where="MMEmbedRerank")
        if reranker is not None and not isinstance(reranker, Reranker):
            raise InputError(f"reranker must be an mmembed.Reranker, got {describe(reranker)}")
        super().__init__(
            model=reranker.name if reranker is not None else str(model),
            top_n=top_n,
            model_kwargs=dict(model_kwargs or {}),
            callback_manager=callback_manager or CallbackManager(),
            **kwargs,
        )
        resolve_instruction(self.task, self.instruction)  # an unknown task fails now
        if reranker is None:
            if isinstance(encoder, MMEmbedEmbedding):
                encoder = encoder.encoder
            reranker = as_reranker(model, encoder=encoder, device=self.device, dtype=self.dtype,
                                   **self.model_kwargs)
        self._reranker = reranker  # type: ignore[assignment]

    @property
    def reranker_kwargs(self) -> Dict[str, Any]:
        """Deprecated name of :attr:`model_kwargs`."""
        warnings.warn("MMEmbedRerank.reranker_kwargs is deprecated: use .model_kwargs", DeprecationWarning,
                      stacklevel=2)
        return self.model_kwargs

    @classmethod
    def class_name(cls) -> str:
        return "MMEmbedRerank"

    @property
    def reranker(self) -> Reranker:
        return self._reranker

    def _postprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            raise InputError("MMEmbedRerank needs the query: pass query_bundle (or query_str) to postprocess_nodes")
        if not nodes:
            return []
        query = query_input(query_bundle, use_embedding_strs=False, where="rerank query")
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            ranked = rerank(
                self._reranker,
                query,
                nodes,
                top_n=self.top_n,
                task=self.task,
                instruction=self.instruction,
                batch_size=self.batch_size,
                on_error=self.on_error,
                ids=[nws.node.node_id for nws in nodes],
                to_input=lambda nws: node_input(nws.node, metadata_mode=self.metadata_mode),
            )
            out: List[NodeWithScore] = []
            for r in ranked:
                nws = nodes[r.index]
                if self.keep_retrieval_score:
                    nws.node.metadata["retrieval_score"] = nws.score
                nws.score = r.score
                out.append(nws)
            event.on_end(payload={EventPayload.NODES: out})
        return out
