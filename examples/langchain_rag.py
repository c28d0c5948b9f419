"""Multimodal RAG with LangChain and mmembed: retrieve -> rerank -> prompt -> (your) chat model.

Run it (offline; the first run fetches the Tux Paint clip-art stamps from the Debian archive into the mmembed
cache, then everything is local):

    python examples/langchain_rag.py

Each image is indexed together with its caption (image, then text) through ``MMEmbedRetriever``; a question
retrieves candidates, ``MMEmbedRerank`` reorders them (in a ``ContextualCompressionRetriever`` when
``langchain-classic`` is installed), and an LCEL chain ``retriever | format_docs | prompt`` builds the prompt.

Options:
    --folder DIR           any folder of images with sidecar .txt captions (cat.png + cat.txt) instead of the stamps
    --question "..."       ask this instead of the built-in questions (repeatable)
    --llm PROVIDER:MODEL   a LangChain chat model for ``init_chat_model``, e.g. ``ollama:llava`` or
                           ``openai:gpt-4o-mini`` (needs that provider's package and a reachable endpoint;
                           also read from $MMEMBED_LLM). Without one, the script prints the retrieved context
                           and the prompt it would send.
    --attach-images        also send the retrieved images to the chat model (for vision models)
    --model NAME_OR_DIR    the mmembed encoder (default: the bundled default model)
    --reranker NAME|none   the mmembed reranker (default: ``default``)
    -k N, --fetch-k N      documents in the prompt / candidates fetched for reranking
    --out DIR              where the index (and the fetched stamps) are written; default: the mmembed cache
                           ($MMEMBED_CACHE/examples/langchain_rag), never the current directory (--db: old name)
    --limit N              index only the first N images
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from langchain_mmembed import MMEmbedRerank, MMEmbedRetriever

QUESTIONS = [
    "Which animals in the collection can fly?",
    "What could I eat for dessert?",
    "Is there anything to travel on water with?",
]

PROMPT = ChatPromptTemplate.from_messages([
    ("system",
     "You answer questions about a collection of pictures. Each context line is one picture: its caption, "
     "then its file. Answer only from the context; name the pictures you use. If the context does not "
     "answer the question, say so.\n\nContext:\n{context}"),
    ("human", "{question}"),
])


def format_docs(docs: Sequence[Document]) -> str:
    """One line per retrieved document: caption, image file and scores."""
    lines = []
    for i, d in enumerate(docs, start=1):
        image = d.metadata.get("image")
        scores = f"similarity {d.metadata.get('score', float('nan')):.3f}"
        if "relevance_score" in d.metadata:
            scores += f", rerank {d.metadata['relevance_score']:.3f}"
        lines.append(f"[{i}] {d.page_content or '(no caption)'}" + (f" -- image: {image}" if image else "")
                     + f" ({scores})")
    return "\n".join(lines)


# ---- data and index -----------------------------------------------------------------------------------------
def stamps_folder(dest: Path) -> Path:
    """The Tux Paint stamps exported as PNG + caption .txt files (fetched once into the mmembed cache)."""
    try:
        from mmembed.data.tuxpaint import export_folder
    except ImportError as exc:  # pragma: no cover - depends on the installed mmembed
        raise SystemExit(f"this mmembed has no Tux Paint exporter ({exc}); pass --folder DIR instead") from exc
    if not any(dest.glob("*.png")):
        print(f"Exporting the Tux Paint stamps to {dest} (the first run fetches them) ...", file=sys.stderr)
        export_folder(dest)
    return dest


def folder_documents(folder: Path, limit: int | None = None) -> list[Document]:
    """A folder of images with sidecar captions as LangChain Documents (image in ``metadata["image"]``)."""
    from mmembed.sources import scan_folder

    docs = []
    for src in scan_folder(folder)[: limit or None]:
        item = src.item
        docs.append(Document(page_content=item.get("text", ""), id=src.metadata["source"],
                             metadata={"image": str(item["image"]), **src.metadata}))
    if not docs:
        raise SystemExit(f"no images found in {folder}")
    return docs


def build_retriever(folder: Path, db: Path, *, model: str | None = None, encoder: Any = None,
                    reranker: Any = "default", k: int = 4, fetch_k: int = 20,
                    limit: int | None = None) -> Runnable:
    """Index ``folder`` (idempotent: unchanged images are not re-embedded) and return retrieve -> rerank."""
    base = MMEmbedRetriever(path=str(db), collection="langchain-rag", k=fetch_k, task="text->image+text",
                            **({"encoder": encoder} if encoder is not None else {}),
                            **({"model": model} if model else {}))
    docs = folder_documents(folder, limit)
    result = base.add_documents(docs, on_error="skip", show_progress=True)
    print(f"Index {db}: {result.summary()} ({len(docs)} images in {folder})", file=sys.stderr)
    for s in result.skipped:
        print(f"  skipped {s.id}: {s.reason}", file=sys.stderr)
    if reranker is None:
        return base.model_copy(update={"k": k})
    named = {"model": reranker} if isinstance(reranker, (str, os.PathLike)) else {"reranker": reranker}
    rerank = MMEmbedRerank(**named, encoder=base.get_store().encoder, top_n=k, task="text->image+text")
    try:
        rerank.client  # load now, so a missing reranker is reported before any question
    except Exception as exc:  # noqa: BLE001
        print(f"warning: reranker {reranker!r} is not available ({exc}); answering without reranking",
              file=sys.stderr)
        return base.model_copy(update={"k": k})
    try:
        from langchain_classic.retrievers import ContextualCompressionRetriever
    except ImportError:  # the same thing in plain LCEL
        return RunnableLambda(lambda q: rerank.compress_documents(base.invoke(q), q), name="retrieve_rerank")
    return ContextualCompressionRetriever(base_compressor=rerank, base_retriever=base)


def build_chain(retriever: Runnable) -> Runnable:
    """``question -> {"docs", "prompt"}``: the LCEL chain retriever | format_docs | prompt."""
    return RunnablePassthrough.assign(docs=lambda x: retriever.invoke(x["question"])) | RunnablePassthrough.assign(
        prompt=lambda x: PROMPT.invoke({"context": format_docs(x["docs"]), "question": x["question"]})
    )


# ---- the chat model -------------------------------------------------------------------------------------------
def load_chat_model(spec: str) -> Any:
    """Any LangChain chat model by ``provider:model`` (``init_chat_model``)."""
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from langchain_classic.chat_models import init_chat_model
    return init_chat_model(spec)


def image_message(docs: Sequence[Document]) -> HumanMessage | None:
    """The retrieved local images as content blocks, for vision chat models."""
    blocks: list[dict[str, Any]] = []
    for d in docs:
        images = d.metadata.get("image") or []
        for path in [images] if isinstance(images, str) else images:
            if os.path.isfile(path):
                mime = mimetypes.guess_type(path)[0] or "image/png"
                data = base64.b64encode(Path(path).read_bytes()).decode()
                blocks.append({"type": "image", "base64": data, "mime_type": mime})
    if not blocks:
        return None
    return HumanMessage(content=[{"type": "text", "text": "The retrieved pictures, in context order:"}, *blocks])


def ask(chain: Runnable, question: str, llm: Any = None, *, attach_images: bool = False,
        out: Any = sys.stdout) -> str | None:
    """Answer one question; without a chat model, print the context and the prompt instead. Returns the answer."""
    result = chain.invoke({"question": question})
    messages: list[BaseMessage] = result["prompt"].to_messages()
    print(f"\n=== {question}", file=out)
    print("Retrieved context:\n" + format_docs(result["docs"]), file=out)
    if attach_images:
        extra = image_message(result["docs"])
        if extra is not None:
            messages.insert(-1, extra)
    if llm is None:
        print("\nNo chat model configured (--llm or $MMEMBED_LLM); the prompt that would be sent:", file=out)
        for m in messages:
            content = m.content if isinstance(m.content, str) else f"[{len(m.content)} content blocks]"
            print(f"--- {m.type}:\n{content}", file=out)
        return None
    answer = llm.invoke(messages)
    text = answer.content if isinstance(answer.content, str) else str(answer.content)
    print(f"\nAnswer: {text}", file=out)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, help="folder of images with sidecar .txt captions (default: Tux Paint)")
    p.add_argument("--question", action="append", help="question to answer (repeatable)")
    p.add_argument("--llm", default=os.environ.get("MMEMBED_LLM"), help="chat model, e.g. ollama:llava")
    p.add_argument("--attach-images", action="store_true", help="send the retrieved images to the chat model")
    p.add_argument("--model", default=None, help="mmembed encoder name or directory")
    p.add_argument("--reranker", default="default", help="mmembed reranker name or directory, or 'none'")
    p.add_argument("-k", type=int, default=4, help="documents in the prompt")
    p.add_argument("--fetch-k", type=int, default=20, help="candidates fetched for reranking")
    p.add_argument("--out", "--db", dest="db", type=Path, default=None,
                   help="directory for the index and fetched images (default: the mmembed cache, examples/langchain_rag)")
    p.add_argument("--limit", type=int, default=0, help="index only the first N images (0 = all)")
    args = p.parse_args(argv)
    if args.db is None:  # never write into the current directory (the repository, when run from it)
        from mmembed.data.fetch import cache_dir

        args.db = cache_dir() / "examples" / "langchain_rag"

    from mmembed.errors import MMEmbedError

    try:
        folder = args.folder if args.folder is not None else stamps_folder(args.db / "stamps")
        retriever = build_retriever(folder, args.db / "index", model=args.model,
                                    reranker=None if args.reranker == "none" else args.reranker,
                                    k=args.k, fetch_k=max(args.fetch_k, args.k), limit=args.limit or None)
        llm = None
        if args.llm:
            try:
                llm = load_chat_model(args.llm)
            except Exception as exc:  # noqa: BLE001 - any provider error: fall back to printing the prompt
                print(f"warning: cannot use chat model {args.llm!r}: {exc}", file=sys.stderr)
        chain = build_chain(retriever)
        for question in args.question or QUESTIONS:
            try:
                ask(chain, question, llm, attach_images=args.attach_images)
            except MMEmbedError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the chat model's endpoint is unreachable
                if llm is None:
                    raise
                print(f"warning: chat model failed ({exc}); showing the prompt instead", file=sys.stderr)
                ask(chain, question, None)
    except MMEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
