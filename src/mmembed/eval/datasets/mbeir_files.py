"""M-BEIR (UniIR format) query and candidate-pool files on disk: ``mbeir:PATH``."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from ...errors import MMEmbedError
from ...instructions import get_task, mbeir_task_for
from .base import DatasetError, EvalDataset, Pool, Subset, sample_indices

logger = logging.getLogger("mmembed.eval.datasets")


#: M-BEIR's dataset ids (the number before ":" in qid/did), as UniIR assigns them.
MBEIR_DATASET_IDS: dict[int, str] = {0: "VisualNews", 1: "Fashion200K", 2: "WebQA", 3: "EDIS", 4: "NIGHTS",
                                     5: "OVEN", 6: "InfoSeek", 7: "FashionIQ", 8: "CIRR", 9: "MSCOCO"}
_MODALITIES = {"text": "text", "image": "image", "image,text": "image+text", "text,image": "image+text",
               "image+text": "image+text"}


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    from ...sources import iter_jsonl

    if not path.is_file():
        raise DatasetError(f"M-BEIR {what} file {path} does not exist")
    rows = [row for _, row in iter_jsonl(path, error=DatasetError)]
    if not rows:
        raise DatasetError(f"M-BEIR {what} file {path} is empty")
    return rows


def find_mbeir_pool(queries: Path) -> Path:
    """The candidate pool for an M-BEIR query file, by M-BEIR's naming and layout.

    ``query/test/mbeir_mscoco_task0_test.jsonl`` pairs with ``mbeir_mscoco_task0_test_cand_pool.jsonl`` or
    ``mbeir_mscoco_task0_cand_pool.jsonl`` beside it or in ``cand_pool/local/`` of the M-BEIR root.
    """
    stem = queries.stem
    names = [f"{stem}_cand_pool.jsonl"]
    m = re.match(r"(.*?)_(train|val|test)$", stem)
    if m:
        names.append(f"{m.group(1)}_cand_pool.jsonl")
    dirs = [queries.parent]
    for parent in list(queries.resolve().parents)[:4]:
        dirs += [parent / "cand_pool" / "local", parent / "cand_pool"]
    for d in dirs:
        for name in names:
            if (d / name).is_file():
                return d / name
    raise DatasetError(f"no candidate pool found for {queries} (looked for {' or '.join(names)} beside it and in "
                       "cand_pool/local/); give it explicitly with --pool")


def _find_image_root(queries: Path, sample: str | None) -> Path:
    if not sample:
        return queries.parent
    for parent in [queries.parent, *queries.resolve().parents]:
        if (parent / sample).exists():
            return parent
    raise DatasetError(f"cannot find the image {sample!r} of {queries.name} under any parent folder; give the "
                       "M-BEIR root (the folder holding mbeir_images/) with --image-root")


def _mbeir_item(txt: Any, img: Any, modality: str, root: Path, where: str) -> Any:
    txt = txt.strip() if isinstance(txt, str) else ""
    has_img = isinstance(img, str) and img.strip() != ""
    if modality == "text" or not has_img:
        if not txt:
            raise DatasetError(f"{where}: modality {modality!r} but no text")
        return txt
    path = Path(img) if Path(img).is_absolute() else root / img
    if modality == "image" or not txt:
        return path
    return {"image": path, "text": txt}


def _mbeir_dataset_name(qid: str, queries: Path) -> str | None:
    head = qid.split(":", 1)[0]
    if head.isdigit() and int(head) in MBEIR_DATASET_IDS:
        return MBEIR_DATASET_IDS[int(head)]
    m = re.match(r"mbeir_([a-z0-9]+)_task", queries.stem.lower())
    return m.group(1) if m else None


def mbeir(queries: str | os.PathLike[str], *, pool: str | os.PathLike[str] | None = None,
          image_root: str | os.PathLike[str] | None = None, limit: int | None = None, seed: int = 0) -> EvalDataset:
    """An M-BEIR (UniIR format) query file against its candidate pool.

    Query rows: ``qid``, ``query_txt``, ``query_img_path``, ``query_modality`` (``text``, ``image``,
    ``image,text``), ``pos_cand_list`` (dids). Pool rows: ``did``, ``txt``, ``img_path``, ``modality``. Image
    paths are relative to the M-BEIR root (found by walking up from the query file, or ``image_root``).
    Queries are grouped by (dataset, query modality, target modality) and each group is encoded with that
    M-BEIR task's instruction (:func:`mmembed.instructions.mbeir_task_for`), falling back to the generic
    task for the modalities. ``limit`` keeps a fixed random sample of that many queries; the pool stays whole.
    """
    qpath = Path(queries).expanduser()
    ppath = Path(pool).expanduser() if pool is not None else find_mbeir_pool(qpath)
    qrows = _read_jsonl(qpath, "query")
    prows = _read_jsonl(ppath, "candidate pool")
    sample_img = next((r.get("img_path") for r in prows if r.get("img_path")), None) or next(
        (r.get("query_img_path") for r in qrows if r.get("query_img_path")), None)
    root = Path(image_root).expanduser() if image_root is not None else _find_image_root(qpath, sample_img)
    did_index: dict[str, int] = {}
    items: list[Any] = []
    ids: list[str] = []
    modalities: list[str] = []
    for n, row in enumerate(prows, start=1):
        did = row.get("did")
        if not isinstance(did, str) or not did:
            raise DatasetError(f"{ppath}:{n}: missing 'did'")
        if did in did_index:
            raise DatasetError(f"{ppath}:{n}: duplicate did {did!r}")
        mod = _MODALITIES.get(str(row.get("modality", "")).replace(" ", ""))
        if mod is None:
            raise DatasetError(f"{ppath}:{n}: unknown modality {row.get('modality')!r}")
        did_index[did] = len(items)
        items.append(_mbeir_item(row.get("txt"), row.get("img_path"), mod, root, f"{ppath.name}:{n}"))
        ids.append(did)
        modalities.append(mod)
    texts = list(items) if all(isinstance(it, str) for it in items) else None
    cand_pool = Pool(key=f"mbeir:{ppath.resolve()}:{root}", items=items, ids=ids, texts=texts)
    groups: dict[tuple[str | None, str, str], list[tuple[str, Any, tuple[int, ...], str | None]]] = {}
    dropped = 0
    keep = set(sample_indices(len(qrows), limit, seed))
    for n, row in enumerate(qrows, start=1):
        if n - 1 not in keep:
            continue
        qid = row.get("qid")
        if not isinstance(qid, str) or not qid:
            raise DatasetError(f"{qpath}:{n}: missing 'qid'")
        qmod = _MODALITIES.get(str(row.get("query_modality", "")).replace(" ", ""))
        if qmod is None:
            raise DatasetError(f"{qpath}:{n}: unknown query_modality {row.get('query_modality')!r}")
        pos = row.get("pos_cand_list")
        if not isinstance(pos, list):
            raise DatasetError(f"{qpath}:{n}: 'pos_cand_list' must be a list of dids")
        rel = tuple(sorted({did_index[d] for d in pos if d in did_index}))
        if not rel:
            dropped += 1
            continue
        tmod = modalities[rel[0]]
        item = _mbeir_item(row.get("query_txt"), row.get("query_img_path"), qmod, root, f"{qpath.name}:{n}")
        name = _mbeir_dataset_name(qid, qpath)
        text = item if isinstance(item, str) else None
        groups.setdefault((name, qmod, tmod), []).append((qid, item, rel, text))
    if dropped:
        logger.warning("%s: %d queries have no positive candidate in %s and were left out", qpath.name, dropped,
                       ppath.name)
    if not groups:
        raise DatasetError(f"{qpath}: no query has a positive candidate in {ppath} (do the dids match?)")
    subsets = []
    for (name, qmod, tmod), rows in groups.items():
        task = mbeir_task_for(name, qmod, tmod) if name else None
        task_name = task.name if task is not None else _generic_task(qmod, tmod)
        label = f"{name or 'M-BEIR'} {qmod}->{tmod}"
        all_text = all(t is not None for *_, t in rows)
        subsets.append(Subset(label, [r[1] for r in rows], [r[2] for r in rows], cand_pool, task_name,
                              query_ids=[r[0] for r in rows],
                              query_texts=[r[3] for r in rows] if all_text else None))  # type: ignore[misc]
    return EvalDataset(f"mbeir:{qpath.name}", subsets, source=f"M-BEIR files {qpath.name} + {ppath.name}",
                       description=f"{sum(len(s) for s in subsets)} queries, pool {len(items)}",
                       baselines=("tfidf", "bm25") if texts is not None else ())


def _generic_task(qmod: str, tmod: str) -> str | None:
    name = f"{qmod}->{tmod}"
    try:
        get_task(name)
    except MMEmbedError:
        return None
    return name
