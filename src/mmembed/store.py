"""A Chroma collection of interleaved image-text documents.

Embedded by default (``chromadb.PersistentClient``: a directory on disk), a Chroma server (``chroma run``)
when given ``host``/``port`` or ``url``. Records are what Chroma users expect: ``documents`` hold the text
parts, ``uris`` the first image location (all of them in metadata ``mmembed:image_uris``), metadata is flat
and sanitised, ids are content hashes unless given. The collection records the encoder's name and dimension,
so opening it with another encoder is refused instead of silently mixing vector spaces.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .chroma_client import (
    DEFAULT_PATH,
    DEFAULT_SERVER_TIMEOUT,
    collection_names,
    connect,
    is_filter_error,
    server_address,
    server_errors,
    server_url,
)
from .encoders.base import Encoder, check_batch_size
from .errors import (
    EncoderMismatchError,
    ImageLoadError,
    InputError,
    MMEmbedError,
    StoreNotFoundError,
    describe,
)
from .images import ImagePolicy
from .inputs import Interleaved, coerce
from .metadata import RESERVED_PREFIX, sanitize_metadata, user_metadata

logger = logging.getLogger(__name__)
#: one warning per skipped input; callers that report ``AddResult.skipped`` themselves (the CLI) silence it
skip_logger = logging.getLogger(f"{__name__}.skips")

DEFAULT_COLLECTION = "mmembed"
OnError = Literal["raise", "skip"]

_K_ENCODER = "mmembed:encoder"
_K_DIM = "mmembed:dim"
_K_HASH = "mmembed:hash"
_K_MODALITY = "mmembed:modality"
_K_URIS = "mmembed:image_uris"
# collection metadata: JSON list of absolute directories whose files this collection may reference (the indexed
# roots and the assets directory). Components that read stored locations (the search page, rerankers) serve
# or open only files under these.
_K_ROOTS = "mmembed:roots"


@dataclass
class Hit:
    """One search result. ``score`` is cosine similarity (higher is better)."""

    id: str
    score: float
    document: str | None
    uris: list[str]
    metadata: dict[str, Any]
    modality: str | None = None
    rerank_score: float | None = None

    def as_input(self) -> Interleaved | None:
        """The stored item as an input (images by their stored locations, then the text)."""
        parts: list[Any] = [{"type": "image", "image": u} for u in self.uris]
        if self.document:
            parts.append(self.document)
        return coerce(parts) if parts else None


@dataclass
class Skipped:
    index: int
    id: str | None
    reason: str

    @property
    def cause(self) -> str:
        """The reason without its "document #i (id ...): " prefix: a position inside one ``add`` call means
        nothing to a user who indexed a folder, where the file name is printed instead."""
        return re.sub(r"^document #\d+(?: \(id [^)]*\))?: ", "", self.reason)


@dataclass
class AddResult:
    """What :meth:`Store.add` did: ids embedded and written, ids already stored with the same content (not
    re-embedded; ``updated`` lists those whose metadata or image location changed and was rewritten), and
    inputs skipped. Every input is in exactly one of ``added``, ``unchanged`` and ``skipped``."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    #: ids of older records deleted because a new record took their place (``Store.add(replace_by=...)``)
    replaced: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.added)} added, {len(self.unchanged)} already indexed, {len(self.skipped)} skipped"
        text += f" ({len(self.updated)} with updated metadata)" if self.updated else ""
        return text + (f", {len(self.replaced)} outdated records removed" if self.replaced else "")

    def merge(self, other: "AddResult") -> "AddResult":
        self.added += other.added
        self.unchanged += other.unchanged
        self.skipped += other.skipped
        self.updated += other.updated
        self.replaced += other.replaced
        return self


def _check_where(where: Any) -> dict[str, Any] | None:
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise InputError(f"where must be a dict (a Chroma metadata filter), got {describe(where)}")
    return dict(where) or None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def prepare_record(value: Any, index: int, given_id: Any, meta: Any,
                   policy: ImagePolicy) -> tuple[str, Interleaved, dict[str, Any]]:
    """``(id, item with its images decoded, record metadata)`` for input ``value`` at position ``index``.

    The one place an input becomes a record, used by :meth:`Store.add` and by the Ray pipeline
    (:mod:`mmembed.scale`), which runs it in worker processes; raises InputError naming the input.
    """
    where = f"document #{index}" + (f" (id {given_id!r})" if given_id is not None else "")
    if given_id is not None and (not isinstance(given_id, str) or not given_id.strip()):
        raise InputError(f"{where}: ids must be non-empty strings, got {describe(given_id)}")
    item = coerce(value, where=where)
    for uri in item.image_uris:
        if not _is_utf8(uri):
            raise InputError(f"{where}: image location {describe(uri)} is not valid UTF-8 (a file name in "
                             "another encoding?), which Chroma cannot store; rename the file")
    for part in item.images:
        try:
            part.load(policy)
        except ImageLoadError as exc:
            raise type(exc)(f"{where}: {exc}") from exc
    digest = item.content_hash(policy)
    record_meta = sanitize_metadata(meta, where=f"{where} metadata") or {}
    record_meta[_K_HASH] = digest
    record_meta[_K_MODALITY] = item.modality
    if item.image_uris:
        record_meta[_K_URIS] = item.image_uris
    return (given_id if given_id is not None else digest), item, record_meta


def _mismatch_advice(stored_name: str, collection: str) -> str:
    """How to go on after an encoder mismatch: the registered model that built the collection, when there is
    one (``mmembed-mini-v2-19f940c1`` -> ``mmembed-mini-v2``), and the re-index command for the new encoder."""
    from .encoders.registry import available_encoders

    base = re.sub(r"-[0-9a-f]{8}$", "", stored_name)
    names = set(available_encoders())
    same = (f"open it with the encoder that built it (`mmembed.load_encoder({base!r})`, or `--encoder {base}` on "
            "the command line)" if base in names else "open it with the encoder that built it")
    return (f"{same}, or re-index your files with this encoder into a new collection: "
            f"`mmembed index PATH --db DB -c {collection}-new` (or drop this one and re-index under its name).")


class Store:
    """Interleaved documents in a Chroma collection, embedded by an mmembed :class:`Encoder`.

    Args:
        path: directory of the embedded database (default ``$MMEMBED_DB`` or ``./mmembed_db``).
        encoder: an Encoder, or a name/path for :func:`mmembed.load_encoder` (loaded on first use).
        collection: collection name (3-512 characters: letters, digits, ``.``, ``_``, ``-``).
        host, port, url: use a Chroma server (``chroma run --path DIR --port 8000``) instead of a directory.
        timeout: seconds a Chroma server may take to answer one request (server mode only) before
            :class:`StoreConnectionError`; chromadb's own client would wait forever on a hung server.
        client: an existing chromadb client (instead of path/host/url).
        image_policy: how document/query images are loaded (remote fetching is off by default).
        create: ``True`` (default) creates the database and the collection when missing, as indexing needs.
            ``False`` is for lookups (search, info, retrievers): a missing database directory or collection
            raises :class:`StoreNotFoundError` (listing the collections that do exist) instead of creating an
            empty one, so a typo in a path or collection name is reported rather than searched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        encoder: Encoder | str | os.PathLike[str] = "default",
        collection: str = DEFAULT_COLLECTION,
        host: str | None = None,
        port: int | None = None,
        url: str | None = None,
        client: Any = None,
        image_policy: ImagePolicy | None = None,
        timeout: float = DEFAULT_SERVER_TIMEOUT,
        create: bool = True,
    ) -> None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
            raise InputError(f"timeout must be a positive number of seconds, got {describe(timeout)}")
        if not isinstance(create, bool):
            raise InputError(f"create must be True or False, got {describe(create)}")
        if not isinstance(encoder, (Encoder, str, os.PathLike)):
            raise InputError(f"encoder must be an mmembed Encoder, a name or a model directory, got "
                             f"{describe(encoder)}")
        if not isinstance(collection, str) or not collection:
            raise InputError(f"collection must be a non-empty collection name, got {describe(collection)}")
        given = [name for name, value in (("path", path), ("url", url), ("host", host), ("client", client))
                 if value is not None]
        if len(given) > 1:
            raise InputError(f"give one location for the store, not {' and '.join(given)}: path is a local "
                             "database directory, url/host a Chroma server, client an existing chromadb client")
        if port is not None and host is None and url is None:
            raise InputError("port is given without host (use host=..., port=... or url='http://host:port')")
        address = server_address(host, port, url) if client is None else None
        self._server = server_url(address) if address else None
        self._client = client if client is not None else connect(path, address, timeout=float(timeout),
                                                                 create=create)
        self._encoder_spec = encoder
        self._encoder: Encoder | None = encoder if isinstance(encoder, Encoder) else None
        self.collection_name = collection
        self._image_policy = image_policy
        self._collection: Any = None
        self.create = create
        if not create:
            self._collection_exists()  # fail now, at the lookup, not at the first query

    # ---- encoder and collection ----------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from .encoders.registry import load_encoder

            self._encoder = load_encoder(self._encoder_spec)  # type: ignore[arg-type]
        return self._encoder

    @property
    def image_policy(self) -> ImagePolicy:
        return self._image_policy or self.encoder.image_policy

    @property
    def collection(self) -> Any:
        if self._collection is None:
            self._collection = self._open_collection()
        return self._collection

    def collection_names(self) -> list[str]:
        """The collections of this database (or server), sorted."""
        with self._guard():
            return collection_names(self._client)

    def _collection_exists(self) -> None:
        """Raise :class:`StoreNotFoundError`, naming the collections that exist, when ours does not."""
        names = self.collection_names()
        if self.collection_name in names:
            return
        where = self._server or "this database"
        listing = (f"existing collections: {', '.join(names)}" if names
                   else "it holds no collections yet (create one with `mmembed index PATH`)")
        raise StoreNotFoundError(f"collection {self.collection_name!r} does not exist in {where}; {listing}")

    def _open_collection(self) -> Any:
        info = self.encoder.info()
        try:
            with self._guard():
                if self.create:
                    col = self._client.get_or_create_collection(
                        self.collection_name,
                        metadata={"hnsw:space": "cosine", _K_ENCODER: info["encoder"], _K_DIM: info["dim"]},
                        embedding_function=None,
                    )
                else:
                    self._collection_exists()
                    col = self._client.get_collection(self.collection_name, embedding_function=None)
        except MMEmbedError:
            raise
        except Exception as exc:  # chroma raises ValueError/InvalidArgumentError for bad names
            raise InputError(f"cannot open collection {self.collection_name!r}: {exc}") from exc
        meta = col.metadata or {}
        stored_name, stored_dim = meta.get(_K_ENCODER), meta.get(_K_DIM)
        if stored_name is None:
            raise EncoderMismatchError(
                f"collection {self.collection_name!r} was not created by mmembed (no encoder recorded); "
                "use another collection name"
            )
        if stored_name != info["encoder"] or int(stored_dim) != int(info["dim"]):
            raise EncoderMismatchError(
                f"collection {self.collection_name!r} was built with encoder {stored_name!r} (dim {stored_dim}), "
                f"but this store uses {info['encoder']!r} (dim {info['dim']}). Vectors from different encoders "
                f"are not comparable: {_mismatch_advice(str(stored_name), self.collection_name)}"
            )
        return col

    def _guard(self):  # type: ignore[no-untyped-def]
        return server_errors(self._server)

    # ---- file roots ----------------------------------------------------------------------------------
    @property
    def roots(self) -> list[Path]:
        """Directories whose files this collection's records may point at (recorded at index time).

        Empty for collections indexed before roots were recorded: readers then serve no files.
        """
        raw = (self.collection.metadata or {}).get(_K_ROOTS)
        if not raw:
            return []
        try:
            values = json.loads(raw)
        except (TypeError, ValueError):
            return []
        return [Path(v) for v in values if isinstance(v, str)]

    def record_roots(self, paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
        """Add directories (made absolute and resolved; a file counts as its parent) to the recorded roots.

        Idempotent; keeps the order of first recording. Returns the roots now recorded.
        """
        current = [str(p) for p in self.roots]
        for value in paths:
            p = Path(value).expanduser().resolve()
            if p.is_file() or p.suffix and not p.exists():
                p = p.parent
            if str(p) not in current:
                current.append(str(p))
        meta = {k: v for k, v in (self.collection.metadata or {}).items() if not k.startswith("hnsw:")}
        if meta.get(_K_ROOTS) != json.dumps(current):
            meta[_K_ROOTS] = json.dumps(current)
            with self._guard():
                self.collection.modify(metadata=meta)
        return [Path(c) for c in current]

    # ---- writing -------------------------------------------------------------------------------------
    def add(
        self,
        items: Iterable[Any],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        on_error: OnError = "raise",
        batch_size: int = 32,
        show_progress: bool | None = None,
        replace_by: str | None = None,
    ) -> AddResult:
        """Embed and upsert documents. Idempotent: content already stored under the same id is not re-embedded.

        ``on_error="raise"`` (default) stops at the first bad input with an error naming it, before anything of
        its chunk is written; ``"skip"`` leaves bad inputs out and lists them in ``AddResult.skipped``.

        ``replace_by="source"``: a document whose metadata key ``source`` equals that of stored records with
        other ids replaces them (ids are content hashes, so an edited file would otherwise leave its old
        record behind). The old records are deleted only after the new one is written, and never for an
        input that was skipped; their ids are in ``AddResult.replaced``.
        """
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        check_batch_size(batch_size)
        if replace_by is not None and (not isinstance(replace_by, str) or not replace_by
                                       or replace_by.startswith(RESERVED_PREFIX)):
            raise InputError(f"replace_by must name a metadata key, got {describe(replace_by)}")
        items = list(items)
        if ids is not None:
            ids = list(ids)
            if len(ids) != len(items):
                raise InputError(f"got {len(ids)} ids for {len(items)} items")
        if metadatas is not None:
            metadatas = list(metadatas)
            if len(metadatas) != len(items):
                raise InputError(f"got {len(metadatas)} metadatas for {len(items)} items")
        result = AddResult()
        chunk = max(batch_size, 1) * 4
        from .progress import progress

        with progress(len(items), "indexing", "doc", show=show_progress, min_total=chunk) as bar:
            for start in range(0, len(items), chunk):
                stop = min(start + chunk, len(items))
                result.merge(self._add_chunk(
                    items[start:stop], start,
                    ids[start:stop] if ids is not None else None,
                    metadatas[start:stop] if metadatas is not None else None,
                    on_error, batch_size, replace_by,
                ))
                bar.update(stop - start)
        return result

    def _prepare(self, value: Any, index: int, given_id: Any, meta: Any) -> tuple[str, Interleaved, dict[str, Any]]:
        return prepare_record(value, index, given_id, meta, self.image_policy)

    def _add_chunk(self, items: list[Any], offset: int, ids: list[Any] | None, metas: list[Any] | None,
                   on_error: OnError, batch_size: int, replace_by: str | None = None) -> AddResult:
        result = AddResult()
        kept: dict[Any, set[str]] = {}  # replace_by value -> ids this chunk writes or keeps under it
        result.merge(self._write_chunk(items, offset, ids, metas, on_error, batch_size, replace_by, kept))
        if replace_by:
            result.replaced.extend(self._delete_replaced(replace_by, kept))
        return result

    def _delete_replaced(self, replace_by: str, kept: dict[Any, set[str]]) -> list[str]:
        """Delete records whose ``replace_by`` metadata value is in ``kept`` but whose id is not kept under it."""
        values = [v for v in kept if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
        if not values:
            return []
        with self._guard():
            found = self.collection.get(where={replace_by: {"$in": values}}, include=["metadatas"])
        stale = [rid for rid, meta in zip(found["ids"], found["metadatas"] or [])
                 if rid not in kept.get((meta or {}).get(replace_by), {rid})]
        if stale:
            with self._guard():
                self.collection.delete(ids=stale)
        return stale

    def _write_chunk(self, items: list[Any], offset: int, ids: list[Any] | None, metas: list[Any] | None,
                     on_error: OnError, batch_size: int, replace_by: str | None,
                     kept: dict[Any, set[str]]) -> AddResult:
        result = AddResult()
        prepared: dict[str, tuple[int, Interleaved, dict[str, Any]]] = {}
        for j, value in enumerate(items):
            index = offset + j
            given = ids[j] if ids is not None else None
            try:
                rid, item, meta = self._prepare(value, index, given, metas[j] if metas is not None else None)
                if rid in prepared and prepared[rid][2][_K_HASH] != meta[_K_HASH]:
                    raise InputError(f"document #{index}: duplicate id {rid!r} with different content in one call")
            except InputError as exc:
                if on_error == "raise":
                    raise
                skip_logger.warning("skipping %s", exc)
                result.skipped.append(Skipped(index, given if isinstance(given, str) else None, str(exc)))
                continue
            if rid in prepared:
                result.unchanged.append(rid)  # same content twice in one call
                continue
            prepared[rid] = (index, item, meta)
        if replace_by:  # only inputs that made it this far may replace older records
            for rid, (_, _, meta) in prepared.items():
                if meta.get(replace_by) is not None:
                    kept.setdefault(meta[replace_by], set()).add(rid)
        return self._write_prepared(prepared, result, batch_size)

    def _write_prepared(self, prepared: dict[str, tuple[int, Interleaved, dict[str, Any]]], result: AddResult,
                        batch_size: int) -> AddResult:
        """Write prepared records (id -> (position, item, metadata)): skip those stored with the same content,
        rewrite changed metadata, embed and upsert the rest. Shared with the Ray pipeline's encoder actors."""
        if not prepared:
            return result
        # embedding cache: records already stored with the same content hash are not re-embedded
        with self._guard():
            existing = self.collection.get(ids=list(prepared), include=["metadatas"])
        replaced: list[str] = []
        refresh: dict[str, tuple[Interleaved, dict[str, Any]]] = {}
        for rid, meta in zip(existing["ids"], existing["metadatas"] or []):
            meta = dict(meta or {})
            new_meta = prepared[rid][2]
            if meta.get(_K_HASH) != new_meta[_K_HASH]:
                replaced.append(rid)  # new content under an old id
                continue
            result.unchanged.append(rid)
            if meta != new_meta:  # same content, new metadata or image location: rewrite those only
                refresh[rid] = (prepared[rid][1], {**{k: None for k in meta if k not in new_meta}, **new_meta})
            del prepared[rid]
        if refresh:
            # Chroma merges metadata on update/upsert; a None value is how a stale key is removed
            with self._guard():
                self.collection.update(
                    ids=list(refresh),
                    metadatas=[m for _, m in refresh.values()],
                    uris=[(d.image_uris[0] if d.image_uris else None) for d, _ in refresh.values()],
                )
            result.updated.extend(refresh)
        if not prepared:
            return result
        rids = list(prepared)
        docs = [prepared[r][1] for r in rids]
        vectors = self.encoder.encode_documents(docs, batch_size=batch_size, show_progress=False)
        with self._guard():
            if replaced:
                # upsert would merge the old record's metadata, uri and document into the new one; a record
                # whose content changed is replaced whole (an interrupted run leaves it missing, and the
                # re-run adds it)
                self.collection.delete(ids=replaced)
            self.collection.upsert(
                ids=rids,
                embeddings=vectors,
                documents=[d.text or None for d in docs],
                uris=[(d.image_uris[0] if d.image_uris else None) for d in docs],
                metadatas=[prepared[r][2] for r in rids],
            )
        for d in docs:  # free decoded pixels
            for p in d.images:
                p.unload()
        result.added.extend(rids)
        return result

    def add_document(
        self,
        records: Iterable[tuple[str | None, Any, Mapping[str, Any] | None]],
        *,
        source: str,
        version: str,
        batch_size: int = 32,
        replace: bool = False,
        write_batch: int | None = None,
    ) -> AddResult:
        """Write the records ``(id or None, item, metadata)`` of one document together.

        Records stream in (a PDF renders page by page): each batch is embedded, its decoded images freed, and
        the vectors kept until the document ends; then all its records go to Chroma in **one upsert** (when
        they fit in Chroma's batch limit, else in pieces of ``write_batch``). So an interrupted or failed
        document leaves nothing (or, past the batch limit, a part that a re-run completes: records are keyed
        by content and the re-run embeds only those missing).

        Metadata must carry ``source`` (= ``source``) and ``doc_sha256`` (= ``version``); the store adds
        ``chunks`` (the document's record count) once the document is complete, so a re-run skips a document
        whose ``chunks`` records of this version are all stored, without reading it again. ``replace=True``
        deletes the source's records that the new version no longer has, once it is written.
        """
        where_doc = {"$and": [{"source": source}, {"doc_sha256": version}]}
        with self._guard():
            found = self.collection.get(where=where_doc, include=["metadatas"])
        result = AddResult()
        if found["ids"] and all((m or {}).get("chunks") == len(found["ids"]) for m in found["metadatas"] or []):
            result.unchanged.extend(found["ids"])
            if replace:
                result.replaced.extend(self._drop_others(source, set(found["ids"])))
            return result
        limit = write_batch or self._max_batch()
        pending: list[tuple[str, np.ndarray, Interleaved, dict[str, Any]]] = []
        order: list[str] = []
        stored_meta: dict[str, dict[str, Any]] = {}  # records already there (or written early): id -> metadata
        written: list[str] = []

        def flush() -> None:
            if not pending:
                return
            with self._guard():
                self.collection.upsert(
                    ids=[p[0] for p in pending], embeddings=np.stack([p[1] for p in pending]),
                    documents=[p[2].text or None for p in pending],
                    uris=[(p[2].image_uris[0] if p[2].image_uris else None) for p in pending],
                    metadatas=[p[3] for p in pending])
            for rid, _, _, meta in pending:
                written.append(rid)
                stored_meta[rid] = dict(meta)
            pending.clear()

        def embed(batch: list[tuple[str, Interleaved, dict[str, Any]]]) -> None:
            if not batch:
                return
            with self._guard():
                existing = self.collection.get(ids=[b[0] for b in batch], include=["metadatas"])
            same = {rid: dict(m or {}) for rid, m in zip(existing["ids"], existing["metadatas"] or [])}
            new = []
            for rid, item, meta in batch:
                old = same.get(rid)
                if old is not None and old.get(_K_HASH) == meta[_K_HASH]:
                    stored_meta[rid] = old
                    result.unchanged.append(rid)
                else:
                    new.append((rid, item, meta))
            if new:
                vectors = self.encoder.encode_documents([n[1] for n in new], batch_size=batch_size,
                                                        show_progress=False)
                for (rid, item, meta), vec in zip(new, vectors):
                    for p in item.images:
                        p.unload()
                    pending.append((rid, vec, item, meta))
                    result.added.append(rid)
            if len(pending) >= limit:
                flush()

        try:
            batch: list[tuple[str, Interleaved, dict[str, Any]]] = []
            seen: set[str] = set()
            for index, (given, value, meta) in enumerate(records):
                rid, item, record_meta = self._prepare(value, index, given or None,
                                                       {**(meta or {}), "source": source, "doc_sha256": version})
                if rid in seen:
                    continue
                seen.add(rid)
                order.append(rid)
                batch.append((rid, item, record_meta))
                if len(batch) >= batch_size:
                    embed(batch)
                    batch = []
            embed(batch)
            for _, _, _, meta in pending:
                meta["chunks"] = len(order)
            if len(pending) > limit:
                while pending:
                    rest = pending[limit:]
                    del pending[limit:]
                    flush()
                    pending.extend(rest)
            flush()
        except BaseException:
            # a document is written whole or not at all: undo what this call wrote (a SIGKILL cannot run this;
            # the re-run then completes the document)
            if written:
                try:
                    with self._guard():
                        self.collection.delete(ids=written)
                except Exception:  # noqa: BLE001 - the original error matters more
                    logger.warning("could not remove the partial records of %s", source)
            raise
        stale = [rid for rid in order if stored_meta.get(rid, {}).get("chunks") != len(order)
                 or stored_meta.get(rid, {}).get("doc_sha256") != version]
        if stale:
            with self._guard():
                self.collection.update(ids=stale, metadatas=[
                    {**stored_meta[r], "chunks": len(order), "doc_sha256": version} for r in stale])
            result.updated.extend(r for r in stale if r not in written)
        if replace:
            result.replaced.extend(self._drop_others(source, set(order)))
        return result

    def _drop_others(self, source: str, keep: set[str]) -> list[str]:
        with self._guard():
            ids = self.collection.get(where={"source": source}, include=[])["ids"]
        stale = [r for r in ids if r not in keep]
        if stale:
            with self._guard():
                self.collection.delete(ids=stale)
        return stale

    def _max_batch(self) -> int:
        try:
            return max(1, int(self._client.get_max_batch_size()))
        except Exception:  # noqa: BLE001 - older clients: Chroma's documented default
            return 5000

    def add_vectors(
        self,
        ids: Sequence[str],
        embeddings: Any,
        *,
        documents: Sequence[str | None] | None = None,
        uris: Sequence[str | None] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Upsert precomputed embeddings (checked for shape, finiteness and dimension first)."""
        ids = list(ids)
        for i, rid in enumerate(ids):
            if not isinstance(rid, str) or not rid.strip():
                raise InputError(f"id #{i} must be a non-empty string, got {describe(rid)}")
        if len(set(ids)) != len(ids):
            dup = next(r for r, n in Counter(ids).items() if n > 1)
            raise InputError(f"id {dup!r} is given more than once")
        try:
            vecs = np.asarray(embeddings, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"embeddings must be a numeric (n, dim) array: {exc}") from exc
        for what, values in (("documents", documents), ("uris", uris), ("metadatas", metadatas)):
            if values is not None and len(values) != len(ids):
                raise InputError(f"got {len(values)} {what} for {len(ids)} ids")
        dim = self.encoder.dim
        if vecs.ndim != 2 or vecs.shape[0] != len(ids) or vecs.shape[1] != dim:
            raise InputError(
                f"embeddings have shape {vecs.shape}, expected ({len(ids)}, {dim}) for encoder {self.encoder.name!r}"
            )
        if not np.isfinite(vecs).all():
            raise InputError("embeddings contain NaN or infinite values")
        metas = [sanitize_metadata(m, where=f"metadata #{i}") for i, m in enumerate(metadatas or [None] * len(ids))]
        with self._guard():
            stale = self.collection.get(ids=ids, include=[])["ids"]
            if stale:  # replace, as in add(): Chroma's upsert would keep the old metadata keys and uri
                self.collection.delete(ids=stale)
            self.collection.upsert(ids=ids, embeddings=vecs, documents=list(documents) if documents else None,
                                   uris=list(uris) if uris else None, metadatas=metas if any(metas) else None)

    def delete(self, ids: Sequence[str] | None = None, *, where: Mapping[str, Any] | None = None) -> None:
        where = _check_where(where)
        if ids is None and where is None:
            raise InputError("delete needs ids or a where filter (refusing to delete everything implicitly)")
        collection = self.collection
        try:
            with self._guard():
                collection.delete(ids=list(ids) if ids is not None else None, where=where)
        except MMEmbedError:
            raise
        except Exception as exc:
            if where is None or not is_filter_error(exc):
                raise
            raise InputError(f"where filter {describe(where, 200)} is not valid: {exc}") from exc

    # ---- reading -------------------------------------------------------------------------------------
    def count(self) -> int:
        with self._guard():
            return int(self.collection.count())

    __len__ = count

    def ids(self) -> list[str]:
        with self._guard():
            return list(self.collection.get(include=[])["ids"])

    def get(self, ids: Sequence[str]) -> list[Hit]:
        with self._guard():
            res = self.collection.get(ids=list(ids), include=["documents", "uris", "metadatas"])
        return [self._hit(rid, None, doc, uri, meta) for rid, doc, uri, meta in
                zip(res["ids"], res["documents"], res["uris"], res["metadatas"])]

    def query(
        self,
        query: Any,
        *,
        k: int = 10,
        task: str | None = None,
        instruction: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Embed ``query`` (text, image or interleaved) with the task instruction and return the top ``k``."""
        vec = self.encoder.encode_queries([query], task=task, instruction=instruction)[0]
        return self.query_vector(vec, k=k, where=where)

    def query_vector(self, vector: Any, *, k: int = 10, where: Mapping[str, Any] | None = None) -> list[Hit]:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k must be a positive integer, got {describe(k)}")
        try:
            vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise InputError(f"query vector must be numeric: {exc}") from exc
        if not np.isfinite(vec).all():
            raise InputError("query vector contains NaN or infinite values")
        if vec.shape[0] != self.encoder.dim:
            raise InputError(f"query vector has dimension {vec.shape[0]}, expected {self.encoder.dim}")
        where = _check_where(where)
        # no count() round trip first: chromadb >= 1.0 returns at most what the collection holds (none if empty)
        collection = self.collection
        try:
            with self._guard():
                res = collection.query(
                    query_embeddings=[vec], n_results=k, where=where,
                    include=["documents", "uris", "metadatas", "distances"],
                )
        except MMEmbedError:
            raise
        except Exception as exc:
            if where is None or not is_filter_error(exc):
                raise
            raise InputError(f"where filter {describe(where, 200)} is not valid: {exc}. Chroma filters look "
                             "like {'key': 'value'}, {'key': {'$gt': 3}} or {'$and': [{...}, {...}]}") from exc
        return [
            self._hit(rid, 1.0 - float(dist), doc, uri, meta)
            for rid, dist, doc, uri, meta in zip(
                res["ids"][0], res["distances"][0], res["documents"][0], res["uris"][0], res["metadatas"][0]
            )
        ]

    @staticmethod
    def _hit(rid: str, score: float | None, doc: str | None, uri: str | None, meta: Mapping[str, Any] | None) -> Hit:
        meta = dict(meta or {})
        uris = list(meta.get(_K_URIS) or ([uri] if uri else []))
        return Hit(id=rid, score=float(score) if score is not None else float("nan"), document=doc, uris=uris,
                   metadata=user_metadata(meta), modality=meta.get(_K_MODALITY))

    def __repr__(self) -> str:
        return f"Store(collection={self.collection_name!r}, encoder={self._encoder_spec!r})"


__all__ = ["AddResult", "DEFAULT_PATH", "Hit", "RESERVED_PREFIX", "Skipped", "Store"]
