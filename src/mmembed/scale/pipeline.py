"""Index sources on Ray Data: list on the driver, decode in Ray tasks, embed and write in encoder actors.

The stages, and why each runs where it does:

1. **Driver**: the sources are listed (:func:`mmembed.sources.read_source` for folders and manifests, or any
   list of :class:`~mmembed.sources.SourceDoc` a document loader makes) into rows ``(position, document)``.
   Listing is cheap; nothing is decoded here.
2. **Decode tasks** (``map_batches`` with a function): each input becomes a record exactly as in the
   single-process path (:func:`mmembed.store.prepare_record`: images decoded and hashed, the content-hash id,
   sanitised metadata). A bad input becomes a ``skipped`` row with the same reason the single-process path
   gives; it never fails the batch.
3. **Encoder actors** (``map_batches`` with a callable class, ``concurrency`` actors, each loading the model
   once, with ``num_cpus``/``num_gpus`` each): the batch goes through :meth:`Store._write_prepared`, the very
   code ``Store.add`` uses: records already stored with the same content are not embedded again, the rest
   are embedded and upserted to the Chroma server under their content-hash ids.
4. **Driver**: iterates the small per-input outcome rows (no vectors, no pixels), shows progress and sums
   them up (added / already indexed / skipped with reasons).

Failures: Ray restarts a killed actor and re-runs its batch; upserts under content-hash ids make the re-run
harmless (records it finds stored are "already indexed"), so nothing is lost or duplicated, and two jobs
indexing the same content write one record. A Chroma server that goes away stops the job with a
:class:`~mmembed.errors.StoreConnectionError`; what was written stays, and a re-run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import time
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, MMEmbedError
from ..sources import SourceDoc, read_source
from ..store import AddResult, Skipped
from .cluster import Cluster, Plan, connect, import_ray, plan_resources

logger = logging.getLogger(__name__)

#: Outcome of one input, as the pipeline reports it back to the driver.
ADDED, UNCHANGED, UPDATED, SKIPPED, ERROR = "added", "unchanged", "updated", "skipped", "error"


@dataclass
class RayIndexResult(AddResult):
    """An :class:`~mmembed.store.AddResult` plus how the run was done."""

    total: int = 0
    cluster: str = ""
    plan: str = ""
    seconds: float = 0.0
    count: int | None = None  # records in the collection after the run
    origins: dict[int, str] = field(default_factory=dict)  # position -> where the input came from


# ---- stage 2: decode (a Ray task) ------------------------------------------------------------------------
def decode_batch(batch: dict[str, np.ndarray], policy: Any, replace_by: str | None = None) -> dict[str, np.ndarray]:
    """Rows ``(pos, doc)`` -> ``(pos, id, status, reason, key, record)`` where ``record`` pickles
    ``(id, item with decoded images, metadata)`` for inputs that can be indexed."""
    from ..store import prepare_record

    out: dict[str, list[Any]] = {"pos": [], "id": [], "status": [], "reason": [], "key": [], "record": []}
    for pos, blob in zip(batch["pos"], batch["doc"]):
        doc: SourceDoc = pickle.loads(blob)
        pos = int(pos)
        try:
            rid, item, meta = prepare_record(doc.item, pos, doc.id, doc.metadata, policy)
        except InputError as exc:
            logger.warning("skipping %s", exc)
            out["id"].append(doc.id or "")
            out["status"].append(SKIPPED)
            out["reason"].append(str(exc))
            out["key"].append("")
            out["record"].append(b"")
        else:
            out["id"].append(rid)
            out["status"].append("")
            out["reason"].append("")
            key = meta.get(replace_by) if replace_by else None
            out["key"].append(json.dumps(key) if key is not None else "")
            out["record"].append(pickle.dumps((rid, item, meta), protocol=pickle.HIGHEST_PROTOCOL))
        out["pos"].append(pos)
    return {"pos": np.asarray(out["pos"], dtype=np.int64), "id": np.asarray(out["id"], dtype=object),
            "status": np.asarray(out["status"], dtype=object), "reason": np.asarray(out["reason"], dtype=object),
            "key": np.asarray(out["key"], dtype=object), "record": np.asarray(out["record"], dtype=object)}


# ---- stage 3: embed and write (a pool of Ray actors) ------------------------------------------------------
class EncodeAndWrite:
    """A Ray Data actor: loads the encoder once, then embeds and writes each batch it is given.

    An mmembed error while writing (the Chroma server gone, a collection built by another encoder) does not
    raise out of the actor: Ray would hand the driver only a generic "UDF failed" error. The batch comes back
    as ``error`` rows carrying the pickled exception instead, and the driver stops the run with it.
    """

    def __init__(self, encoder: Any, store_url: str, collection: str, threads: int, device: str | None,
                 batch_size: int, timeout: float) -> None:
        from ..encoders.base import Encoder

        if not isinstance(encoder, Encoder):
            from ..encoders.registry import load_encoder

            encoder = load_encoder(encoder, device=device)
        if "torch" in sys.modules:  # the encoder's threads (an encoder without torch gets no torch import)
            sys.modules["torch"].set_num_threads(max(1, int(threads)))
        self.encoder = encoder
        self.store_url, self.collection, self.timeout = store_url, collection, timeout
        self.store: Any = None  # connected on first use, inside the error handling below
        self.batch_size = batch_size

    def _store(self) -> Any:
        if self.store is None:
            from ..store import Store

            store = Store(url=self.store_url, encoder=self.encoder, collection=self.collection, timeout=self.timeout)
            store.collection  # noqa: B018 - open (and check the encoder against) the collection now
            self.store = store
        return self.store

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status = [str(s) for s in batch["status"]]
        ids = [str(i) for i in batch["id"]]
        error = b""
        try:
            prepared: dict[str, tuple[int, Any, dict[str, Any]]] = {}
            for j, blob in enumerate(batch["record"]):
                if status[j] == SKIPPED:
                    continue
                rid, item, meta = pickle.loads(blob)
                if rid in prepared:
                    status[j] = UNCHANGED  # the same content twice in one batch, as Store.add counts it
                    continue
                prepared[rid] = (j, item, meta)
            where = {rid: j for rid, (j, _, _) in prepared.items()}
            result = self._store()._write_prepared(prepared, AddResult(), self.batch_size)
        except MMEmbedError as exc:
            logger.error("batch failed: %s", exc)
            self.store = None  # reconnect on the next batch
            error = pickle.dumps(exc)
            status = [s if s == SKIPPED else ERROR for s in status]
        else:
            for rid in result.added:
                status[where[rid]] = ADDED
            updated = set(result.updated)
            for j, rid in enumerate(ids):
                if not status[j]:
                    status[j] = UPDATED if rid in updated else UNCHANGED
        return {"pos": batch["pos"], "id": np.asarray(ids, dtype=object), "status": np.asarray(status, dtype=object),
                "reason": batch["reason"], "key": batch["key"],
                "error": np.asarray([error] * len(ids), dtype=object)}


# ---- stage 1 and 4: the driver ----------------------------------------------------------------------------
class _EncoderInfo:
    """What the driver needs from an encoder it does not load itself (name, dim, image policy)."""

    def __init__(self, name: str, dim: int, policy: Any) -> None:
        from ..encoders.base import Encoder

        class _Info(Encoder):
            def _encode_batch(self, items, *, instruction, is_query):  # type: ignore[no-untyped-def]
                raise MMEmbedError("the driver does not embed; encoder actors do")

        self.encoder = _Info()
        self.encoder.name, self.encoder.dim, self.encoder.image_policy = name, dim, policy


def _probe_encoder(spec: Any, device: str | None) -> tuple[str, int, Any]:
    from ..encoders.registry import load_encoder

    enc = load_encoder(spec, device=device)
    return enc.name, int(enc.dim), enc.image_policy


def _is_dataset(value: Any) -> bool:
    return type(value).__module__.startswith("ray.data") and hasattr(value, "iter_rows")


def list_sources(sources: Any, *, recursive: bool = True) -> list[SourceDoc]:
    """The documents to index (driver side) from a path, a list of paths, a list of SourceDoc, or a Ray
    Dataset whose rows look like manifest rows (``image``/``images``/``text``, optional ``id`` and
    ``metadata``, other columns become metadata; relative image paths are relative to the working directory)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if _is_dataset(sources):
        from ..sources import _row_doc

        def plain(value: Any) -> Any:  # Arrow hands back numpy arrays and scalars
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return plain(value.tolist()) if hasattr(value, "tolist") else value

        return [_row_doc({k: plain(v) for k, v in row.items() if plain(v) is not None}, Path.cwd(), f"row {i}")
                for i, row in enumerate(sources.iter_rows())]
    docs: list[SourceDoc] = []
    for src in sources:
        if isinstance(src, SourceDoc):
            docs.append(src)
        elif isinstance(src, (str, os.PathLike)):
            docs.extend(read_source(src, recursive=recursive))
        else:
            raise InputError(f"cannot index {type(src).__name__} on Ray: give paths (folders, manifests) or "
                             "SourceDoc items")
    return docs


def _root_of(cause: BaseException) -> BaseException:
    """The mmembed error inside a Ray error chain (Ray wraps an actor's exception in its own types)."""
    seen: set[int] = set()
    stack = [cause]
    while stack:
        exc = stack.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, MMEmbedError):
            return exc
        for nxt in (getattr(exc, "cause", None), exc.__cause__, exc.__context__):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return cause


class RayIndexError(MMEmbedError):
    """A Ray indexing run stopped; ``partial`` says what it finished (kept in the store) before stopping."""

    def __init__(self, message: str, partial: RayIndexResult, cause: BaseException) -> None:
        super().__init__(message)
        self.partial = partial
        self.cause = cause


def index_with_ray(
    sources: Any,
    *,
    store_url: str,
    collection: str = "mmembed",
    encoder: Any = "default",
    concurrency: int | None = None,
    batch_size: int = 32,
    num_cpus: float | None = None,
    num_gpus: float = 0.0,
    threads: int | None = None,
    ray_address: str | None = "auto",
    recursive: bool = True,
    replace_by: str | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    timeout: float = 120.0,
    progress: bool | None = None,
    on_start: Callable[[Cluster, Plan], None] | None = None,
) -> RayIndexResult:
    """Index ``sources`` into the collection ``collection`` of the Chroma server at ``store_url`` on Ray Data.

    Args:
        sources: a folder, a ``.jsonl``/``.csv`` manifest, a list of those, a list of
            :class:`~mmembed.sources.SourceDoc` (what a document loader produces), or a Ray Dataset of
            manifest-like rows (see :func:`list_sources`).
        encoder: a name/path for :func:`mmembed.load_encoder` (each actor loads it once) or an Encoder
            instance (pickled to the actors; fine for small models).
        concurrency: number of encoder actors (default: one per GPU asked for, else one per two CPUs).
        batch_size: inputs per batch, for decoding, embedding and each write.
        num_cpus, num_gpus: what each encoder actor asks Ray for (CPUs may be fractional; by default the CPUs
            left after the decode tasks' share, split between actors). ``threads``: torch threads per actor.
        ray_address: ``"auto"`` (``RAY_ADDRESS``, else a cluster running here, else start a local one),
            ``"local"``, or a cluster address.
        replace_by: like ``Store.add(replace_by=...)``: records with the same value of this metadata key and
            another id are deleted once the run has written the new ones.
        roots: directories recorded on the collection (``Store.record_roots``); default: the source paths.
        on_start: called with the cluster and the actor plan before work starts (the CLI prints them).

    Returns a :class:`RayIndexResult`. Raises :class:`RayIndexError` (with ``partial`` results and the
    underlying mmembed error as ``cause``) when the run stops, e.g. because the Chroma server went away.
    """
    from ..encoders.base import Encoder
    from ..store import Store

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    t0 = time.monotonic()
    is_dataset = _is_dataset(sources)
    docs = [] if is_dataset else list_sources(sources, recursive=recursive)  # fail fast, before Ray starts
    if not docs and not is_dataset:
        raise InputError(f"no images or rows found in {sources}")
    if roots is None:
        roots = [s for s in (sources if isinstance(sources, (list, tuple)) else [sources])
                 if isinstance(s, (str, os.PathLike))]
    ray = import_ray()
    cluster = connect(ray_address)
    try:
        if is_dataset:  # reading a dataset needs the cluster
            docs = list_sources(sources)
            if not docs:
                raise InputError("the dataset has no rows")
        plan = plan_resources(cluster.node_cpus or cluster.cpus, cluster.gpus, concurrency=concurrency, num_cpus=num_cpus,
                              num_gpus=num_gpus, threads=threads)
        device = "cuda" if plan.actor_gpus else None
        # the driver needs the encoder's name, dim and image policy to open the collection and decode; a
        # model named by a spec is loaded where the actors will run, not on the driver
        if isinstance(encoder, Encoder):
            info = encoder
        else:
            probe = ray.remote(num_cpus=plan.decode_cpus, num_gpus=plan.actor_gpus)(_probe_encoder)
            try:
                name, dim, policy = ray.get(probe.remote(encoder, device))
            except Exception as exc:  # noqa: BLE001 - ray wraps the worker's exception
                raise _root_of(exc) from exc
            info = _EncoderInfo(name, dim, policy).encoder
        store = Store(url=store_url, encoder=info, collection=collection, timeout=timeout)
        store.record_roots(roots)
        if on_start is not None:
            on_start(cluster, plan)
        result = RayIndexResult(total=len(docs), cluster=cluster.describe(), plan=plan.describe(),
                                origins={i: d.origin for i, d in enumerate(docs)})
        try:
            _run(ray, docs, result, store=store, store_url=store_url, collection=collection, encoder=encoder,
                 policy=info.image_policy, plan=plan, device=device, batch_size=batch_size, timeout=timeout,
                 replace_by=replace_by, progress=progress)
        except Exception as exc:
            root = _root_of(exc)
            if isinstance(root, MMEmbedError):
                raise RayIndexError(str(root), result, root) from exc
            raise
        result.count = store.count()
        result.seconds = time.monotonic() - t0
        return result
    finally:
        cluster.shutdown()


def _run(ray: Any, docs: list[SourceDoc], result: RayIndexResult, *, store: Any, store_url: str, collection: str,
         encoder: Any, policy: Any, plan: Plan, device: str | None, batch_size: int, timeout: float,
         replace_by: str | None, progress: bool | None) -> None:
    from ray.data import DataContext
    from tqdm.auto import tqdm

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over inputs instead of one per operator
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    ctx.print_on_execution_start = False
    rows = [{"pos": i, "doc": pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)} for i, d in enumerate(docs)]
    blocks = max(1, min(len(rows) // batch_size, 200))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=plan.decode_cpus,
                        fn_kwargs={"policy": policy, "replace_by": replace_by})
    config = {"encoder": encoder, "store_url": store_url, "collection": collection, "threads": plan.threads,
              "device": device, "batch_size": batch_size, "timeout": timeout}
    ds = ds.map_batches(EncodeAndWrite, fn_constructor_kwargs=config, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=plan.concurrency), num_cpus=plan.actor_cpus,
                        num_gpus=plan.actor_gpus or None)
    kept: dict[Any, set[str]] = {}
    seen: set[int] = set()
    added: set[str] = set()
    with tqdm(total=len(docs), desc="indexing", unit="doc", disable=None if progress is None else not progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            n = 0
            for pos, rid, status, reason, key, error in zip(batch["pos"], batch["id"], batch["status"],
                                                            batch["reason"], batch["key"], batch["error"]):
                if status == ERROR:  # leaving the loop stops the dataset (and its actors)
                    raise pickle.loads(error)
                pos = int(pos)
                if pos in seen:  # never expected (Ray Data yields each output once); counted once regardless
                    continue
                seen.add(pos)
                n += 1
                rid, status = str(rid), str(status)
                if status == SKIPPED:
                    result.skipped.append(Skipped(pos, rid or None, str(reason)))
                    continue
                if status == ADDED and rid not in added:
                    added.add(rid)
                    result.added.append(rid)
                else:
                    result.unchanged.append(rid)
                    if status == UPDATED:
                        result.updated.append(rid)
                if key:
                    kept.setdefault(json.loads(str(key)), set()).add(rid)
            bar.update(n)
    if len(seen) != len(docs):  # a guard against silently lost inputs
        raise MMEmbedError(f"the Ray pipeline returned {len(seen)} of {len(docs)} inputs; re-run to finish")
    if replace_by and kept:
        result.replaced.extend(store._delete_replaced(replace_by, kept))
    result.skipped.sort(key=lambda s: s.index)

