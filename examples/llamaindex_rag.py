"""Multimodal RAG with LlamaIndex and mmembed: index a folder of captioned images, ask with text, with an image,
and with an image plus text, rerank, and hand the context to an LLM (or print the prompt).

Run it (offline; the first run fetches the Tux Paint clip-art stamps from the Debian archive into the mmembed
cache, then everything is local):

    python examples/llamaindex_rag.py

(The first run embeds the 785 stamps twice, for the LlamaIndex index and for mmembed's store: a few minutes
on a laptop CPU; ``--limit 100`` for a quicker look. Later runs reuse both indexes.)

What it does, with LlamaIndex's own classes throughout:

1. ``SimpleDirectoryReader`` reads the images: each ``cat.png`` becomes an ``ImageDocument`` (by path, no
   base64) whose text is its caption ``cat.txt``.
2. ``MultiModalVectorStoreIndex`` embeds the captions and the pictures with ``MMEmbedEmbedding`` into two
   persistent ``ChromaVectorStore`` collections, one vector space for both. A second run reuses them. Text
   queries use the ``text->text`` instruction on captions and ``text->image`` on pictures: two
   ``MMEmbedEmbedding`` objects sharing one loaded encoder.
3. A ``RetrieverQueryEngine`` retrieves from both collections and ``MMEmbedRerank`` reads each candidate's
   picture and caption together against the question; the response synthesizer runs in ``no_text`` mode, so
   no LLM is called, and the script prints the ranked context and the prompt an LLM would get. Pass ``llm=``
   to ``RetrieverQueryEngine.from_args`` with any LlamaIndex LLM to get answers instead.
4. An image query (``image_to_image_retrieve`` + the reranker reading the query image), and a composed
   image+text query ("this picture, but ...") through ``MMEmbedRetriever`` over mmembed's own store, which
   indexes each image together with its caption.

Options:
    --folder DIR           any folder of images with sidecar .txt captions instead of the Tux Paint stamps
    --question "..."       ask this instead of the built-in questions (repeatable)
    --image PATH           query image (default: a red apple stamp, or the folder's first image)
    --image-text "..."     text composed with the query image (default: "a pear")
    --model NAME_OR_DIR    the mmembed encoder (default: the bundled default model)
    --reranker NAME|none   the mmembed reranker (default: ``default``)
    -k N, --fetch-k N      nodes kept after reranking / candidates fetched per collection
    --out DIR              where the Chroma collections (and the fetched stamps) are written; default: the mmembed
                           cache ($MMEMBED_CACHE/examples/llamaindex_rag), never the current directory (--db: old
                           name); --rebuild starts them afresh
    --limit N              index only the first N images (0 = all)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings
from llama_index.core import PromptTemplate, SimpleDirectoryReader, StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import Document, ImageNode, NodeWithScore, QueryBundle
from llama_index.vector_stores.chroma import ChromaVectorStore

from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
from llama_index.retrievers.mmembed import MMEmbedRetriever

QUESTIONS = [
    "Which animals in the collection can fly?",
    "What could I eat for dessert?",
    "Is there anything to travel on water with?",
]

PROMPT = PromptTemplate(
    "You answer questions about a collection of pictures. Each context line is one picture: its file, then its "
    "caption. Answer only from the context and name the pictures you use; if the context does not answer the "
    "question, say so.\n\nContext:\n{context_str}\n\nQuestion: {query_str}\nAnswer: "
)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
COLLECTIONS = ("llamaindex-rag-captions", "llamaindex-rag-images")


# ---- data -------------------------------------------------------------------------------------------------------
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


def load_documents(folder: Path, limit: int | None = None) -> list[Document]:
    """``SimpleDirectoryReader`` reads the images (``ImageDocument`` by path, no base64); each gets its sidecar
    caption (``cat.png`` + ``cat.txt``) as its text, so a picture and its caption are one node."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)[: limit or None]
    if not images:
        raise SystemExit(f"no images found in {folder}")
    docs = SimpleDirectoryReader(input_files=[str(p) for p in images]).load_data()
    for doc in docs:
        caption = Path(doc.image_path).with_suffix(".txt")
        if caption.is_file():
            doc.set_content(caption.read_text(encoding="utf-8").strip())
        # embed the caption, not the file's path
        doc.excluded_embed_metadata_keys = [*doc.excluded_embed_metadata_keys, "file_path"]
    return docs


# ---- LlamaIndex: Chroma + MultiModalVectorStoreIndex -----------------------------------------------------------
def build_index(folder: Path, db: Path, text_embed: MMEmbedEmbedding, image_embed: MMEmbedEmbedding, *,
                limit: int | None = None, rebuild: bool = False) -> MultiModalVectorStoreIndex:
    """Index ``folder`` into two Chroma collections, or reopen them when they hold this encoder's vectors."""
    client = chromadb.PersistentClient(path=str(db), settings=ChromaSettings(anonymized_telemetry=False))
    encoder_name = image_embed.encoder.name
    existing = {c.name if hasattr(c, "name") else str(c) for c in client.list_collections()}
    if not rebuild and all(name in existing for name in COLLECTIONS):
        cols = [client.get_collection(name) for name in COLLECTIONS]
        if all((c.metadata or {}).get("mmembed:encoder") == encoder_name for c in cols) and cols[1].count():
            print(f"Reusing the index in {db} ({cols[0].count()} captions, {cols[1].count()} images)",
                  file=sys.stderr)
            return MultiModalVectorStoreIndex.from_vector_store(
                ChromaVectorStore(chroma_collection=cols[0]), embed_model=text_embed,
                image_vector_store=ChromaVectorStore(chroma_collection=cols[1]), image_embed_model=image_embed)
        rebuild = True  # built by another encoder: vectors are not comparable
    for name in COLLECTIONS:
        if rebuild and name in existing:
            client.delete_collection(name)
    meta = {"hnsw:space": "cosine", "mmembed:encoder": encoder_name}
    text_store, image_store = (ChromaVectorStore(chroma_collection=client.get_or_create_collection(n, metadata=meta))
                               for n in COLLECTIONS)
    docs = load_documents(folder, limit)
    print(f"Indexing {len(docs)} captioned images from {folder} into {db} ...", file=sys.stderr)
    ctx = StorageContext.from_defaults(vector_store=text_store, image_store=image_store)
    return MultiModalVectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=text_embed,
                                                     image_embed_model=image_embed, show_progress=True)


def load_reranker(name: str | None, encoder_embed: MMEmbedEmbedding, k: int) -> BaseNodePostprocessor | None:
    """``MMEmbedRerank`` scoring captions and images together, or None when unavailable or turned off."""
    if name is None:
        return None
    try:
        return MMEmbedRerank(name, encoder=encoder_embed, top_n=k)
    except Exception as exc:  # noqa: BLE001 - the demo still works without reranking
        print(f"warning: reranker {name!r} is not available ({exc}); ranking by similarity only", file=sys.stderr)
        return None


def build_engine(index: MultiModalVectorStoreIndex, reranker: BaseNodePostprocessor | None, *, k: int,
                 fetch_k: int) -> RetrieverQueryEngine:
    """Retrieve ``fetch_k`` captions and ``fetch_k`` images, rerank them together, keep ``k``; no LLM call."""
    return RetrieverQueryEngine(
        index.as_retriever(similarity_top_k=fetch_k, image_similarity_top_k=fetch_k),
        response_synthesizer=NoText(llm=MockLLM()),  # no_text mode: return the nodes, call no LLM
        node_postprocessors=[reranker] if reranker is not None else [],
    )


# ---- output -----------------------------------------------------------------------------------------------------
def describe_node(n: NodeWithScore) -> str:
    node = n.node
    text = (node.text or "").strip()
    if isinstance(node, ImageNode):
        name = Path(node.image_path or node.image_url or "?").name
        return f"picture {name}" + (f": {text!r}" if text else "")
    return f"text {text!r}"


def context_lines(nodes: Sequence[NodeWithScore], k: int) -> str:
    best = sorted(nodes, key=lambda n: -(n.score if n.score is not None else float("-inf")))[:k]
    return "\n".join(f"[{i}] {describe_node(n)} (score {n.score:.3f})" for i, n in enumerate(best, start=1))


def ask(engine: RetrieverQueryEngine, question: str, k: int, out: Any = None) -> list[NodeWithScore]:
    out = out or sys.stdout
    response = engine.query(question)
    context = context_lines(response.source_nodes, k)
    print(f"\n=== {question}\n{context}", file=out)
    print("\nPrompt for an LLM:\n" + PROMPT.format(context_str=context, query_str=question), file=out)
    return response.source_nodes


def ask_with_image(index: MultiModalVectorStoreIndex, reranker: BaseNodePostprocessor | None, image: Path, *,
                   k: int, fetch_k: int, out: Any = None) -> list[NodeWithScore]:
    """Image query: nearest images, then the reranker reads the query image against each candidate."""
    out = out or sys.stdout
    nodes = index.as_retriever(image_similarity_top_k=fetch_k).image_to_image_retrieve(str(image))
    if reranker is not None:
        nodes = reranker.postprocess_nodes(nodes, QueryBundle(query_str="", image_path=str(image)))
    print(f"\n=== pictures like {image.name}\n{context_lines(nodes, k)}", file=out)
    return nodes


def ask_composed(folder: Path, db: Path, embed: MMEmbedEmbedding, image: Path, text: str, *, k: int,
                 limit: int | None = None, out: Any = None) -> list[NodeWithScore]:
    """Image + text in one query, over mmembed's own store (each image indexed with its caption)."""
    out = out or sys.stdout
    from mmembed import Store
    from mmembed.sources import scan_folder

    # one collection per encoder: mmembed refuses to mix vectors of two encoders in one collection
    tag = hashlib.sha1(embed.encoder.name.encode()).hexdigest()[:8]
    store = Store(db, encoder=embed.encoder, collection=f"llamaindex-rag-{tag}")
    docs = scan_folder(folder)[: limit or None]
    result = store.add([d.item for d in docs], metadatas=[d.metadata for d in docs], on_error="skip")
    print(f"mmembed store {db}: {result.summary()}", file=sys.stderr)
    retriever = MMEmbedRetriever(store, similarity_top_k=k, task="image->image+text")
    nodes = retriever.retrieve(QueryBundle(query_str=text, image_path=str(image)))
    print(f"\n=== {image.name} + {text!r}\n{context_lines(nodes, k)}", file=out)
    return nodes


def default_query_image(folder: Path) -> Path:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    return next((p for p in images if "apple_red" in p.stem), images[0])


def main(argv: Sequence[str] | None = None, *, encoder: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--folder", type=Path, help="folder of images with sidecar .txt captions (default: Tux Paint)")
    p.add_argument("--question", action="append", help="question to answer (repeatable)")
    p.add_argument("--image", type=Path, help="query image")
    p.add_argument("--image-text", default="a pear", help="text composed with the query image")
    p.add_argument("--model", default="default", help="mmembed encoder name or directory")
    p.add_argument("--reranker", default="default", help="mmembed reranker name or directory, or 'none'")
    p.add_argument("-k", type=int, default=4, help="nodes kept after reranking")
    p.add_argument("--fetch-k", type=int, default=10, help="candidates fetched per collection")
    p.add_argument("--out", "--db", dest="db", type=Path, default=None,
                   help="directory for the index and fetched images (default: the mmembed cache, examples/llamaindex_rag)")
    p.add_argument("--rebuild", action="store_true", help="re-create the Chroma collections")
    p.add_argument("--limit", type=int, default=0, help="index only the first N images (0 = all)")
    args = p.parse_args(argv)
    if args.db is None:  # never write into the current directory (the repository, when run from it)
        from mmembed.data.fetch import cache_dir

        args.db = cache_dir() / "examples" / "llamaindex_rag"

    from mmembed.errors import MMEmbedError

    try:
        folder = args.folder if args.folder is not None else stamps_folder(args.db / "stamps")
        # one encoder, two instructions: captions are searched as text->text, pictures as text->image
        image_embed = MMEmbedEmbedding(args.model, encoder=encoder, task="text->image")
        text_embed = MMEmbedEmbedding(args.model, encoder=image_embed.encoder, task="text->text")
        limit = args.limit or None
        index = build_index(folder, args.db / "chroma", text_embed, image_embed, limit=limit, rebuild=args.rebuild)
        reranker = load_reranker(None if args.reranker == "none" else args.reranker, image_embed, args.k)
        engine = build_engine(index, reranker, k=args.k, fetch_k=max(args.fetch_k, args.k))
        for question in args.question or QUESTIONS:
            ask(engine, question, args.k)
        image = args.image or default_query_image(folder)
        ask_with_image(index, reranker, image, k=args.k, fetch_k=max(args.fetch_k, args.k))
        ask_composed(folder, args.db / "mmembed", image_embed, image, args.image_text, k=args.k, limit=limit)
    except MMEmbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
