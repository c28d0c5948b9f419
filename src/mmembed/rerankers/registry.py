"""``load_reranker``: named rerankers plus detection of local reranker directories (mirrors ``load_encoder``).

* ``"default"`` (alias ``"mmembed-fusion"``): the offline fusion reranker of :mod:`mmembed.rerankers.fusion`,
  which re-scores with the first-stage encoder (multi-view images) fused with BM25 over candidate text.
* a directory holding a sentence-transformers ``CrossEncoder`` (``config_sentence_transformers.json`` with
  ``"model_type": "CrossEncoder"``, or a ``*ForSequenceClassification`` config): the text cross-encoder.
* a directory holding a transformers image-text-to-text checkpoint (LLaVA-NeXT, Qwen2-VL, Idefics, ...):
  the MLLM yes/no reranker.
* a Qwen3-VL-Reranker directory (``config.json`` with ``model_type`` ``qwen3_vl`` *and* a sentence-transformers
  ``CrossEncoder`` config): the native Qwen3-VL yes/no reranker (:mod:`mmembed.rerankers.qwen3_vl`); a
  Qwen3-VL chat model without that config is an MLLM for the generic yes/no reranker.
* ``mmembed_reranker.json`` with ``{"backend": "..."}`` in a directory forces a backend.

Backends are imported only when used. A hub id (``org/name[@revision]``) is downloaded once into the
Hugging Face cache (see :mod:`mmembed.hub`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelLoadError, describe
from .base import Reranker

CONFIG_FILE = "mmembed_reranker.json"

# name -> "module:function" taking (name, **kwargs)
_NAMED: dict[str, str | Callable[..., Reranker]] = {
    "default": "mmembed.rerankers.fusion:load_default",
    "mmembed-fusion": "mmembed.rerankers.fusion:load_default",
    # downloaded by name (mmembed.hub) and always run by the Qwen3-VL yes/no backend, whatever files they ship
    "Qwen/Qwen3-VL-Reranker-2B": "mmembed.rerankers.qwen3_vl:load_from_hub",
    "Qwen/Qwen3-VL-Reranker-8B": "mmembed.rerankers.qwen3_vl:load_from_hub",
}

# backend key -> "module:function" taking (path, **kwargs)
_BACKENDS: dict[str, str | Callable[..., Reranker]] = {
    "mllm": "mmembed.rerankers.mllm:load_mllm",
    "cross-encoder": "mmembed.rerankers.cross_encoder:load_cross_encoder",
    "qwen3-vl": "mmembed.rerankers.qwen3_vl:load_qwen3_vl_reranker",
}

#: Backends that re-embed with the first-stage encoder and therefore accept ``encoder=``.
_TAKES_ENCODER = {"mmembed.rerankers.fusion:load_default"}

_MLLM_ARCH_SUFFIXES = ("ForConditionalGeneration", "ForImageTextToText", "ForVision2Seq")


def register_reranker(name: str, target: str | Callable[..., Reranker]) -> None:
    """Register a named reranker: ``target`` is a callable or a ``"module:function"`` string."""
    _NAMED[name] = target


def available_rerankers() -> list[str]:
    return sorted(_NAMED)


def _resolve(target: str | Callable[..., Reranker]) -> Callable[..., Reranker]:
    if callable(target):
        return target
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def detect_backend(path: Path) -> str:
    """Which reranker backend can load the directory ``path`` (by the files it holds)."""
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory; give a reranker model directory")
    own = path / CONFIG_FILE
    if own.is_file():
        backend = _read_json(own).get("backend")
        if backend not in _BACKENDS:
            raise ModelLoadError(f"{own} names unknown backend {backend!r}; known: {sorted(_BACKENDS)}")
        return str(backend)
    st = path / "config_sentence_transformers.json"
    is_cross_encoder = st.is_file() and _read_json(st).get("model_type") == "CrossEncoder"
    cfg_path = path / "config.json"
    if is_cross_encoder and cfg_path.is_file() and _read_json(cfg_path).get("model_type") == "qwen3_vl":
        # Qwen3-VL-Reranker ships config.json and a sentence-transformers CrossEncoder config: the native
        # backend wins (it needs no torchvision), proven equal to the sentence-transformers CrossEncoder
        return "qwen3-vl"
    if is_cross_encoder:
        return "cross-encoder"
    cfg_file = path / "config.json"
    if cfg_file.is_file():
        from .mllm import MLLM_MODEL_TYPES

        cfg = _read_json(cfg_file)
        archs = [str(a) for a in cfg.get("architectures") or []]
        model_type = str(cfg.get("model_type", ""))
        if any(a.endswith("ForSequenceClassification") for a in archs):
            return "cross-encoder"
        if model_type in MLLM_MODEL_TYPES or ("vision_config" in cfg and
                                               any(a.endswith(_MLLM_ARCH_SUFFIXES) for a in archs)):
            return "mllm"
        raise ModelLoadError(
            f"{path}: config.json has model_type {model_type!r} / architectures {archs}, which is neither a "
            "cross-encoder (*ForSequenceClassification) nor an image-text-to-text model mmembed can rerank with"
        )
    raise ModelLoadError(f"{path} holds no reranker mmembed recognises (looked for {CONFIG_FILE}, "
                         "config_sentence_transformers.json, config.json)")


def load_reranker(
    name_or_path: str | os.PathLike[str] = "default",
    *,
    device: str | None = None,
    dtype: str | None = None,
    encoder: Any = None,
    **kwargs: Any,
) -> Reranker:
    """Load a reranker by name (``default``), local directory (cross-encoder or MLLM checkpoint) or hub id.

    ``encoder`` is the first-stage encoder (an Encoder or a name for :func:`mmembed.load_encoder`); only
    rerankers that re-embed use it (the default one), others ignore it -- the pipeline passes the store's
    encoder so the default reranker scores in the space the candidates were retrieved in.
    ``device``/``dtype`` as in :func:`mmembed.load_encoder`; other keyword arguments go to the backend.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path):
        raise InputError(f"load_reranker: name_or_path must be a registered name "
                         f"({', '.join(available_rerankers())}) or a model directory, got {describe(name_or_path)}")
    from ..encoders._torch import check_device, check_dtype

    check_device(device)
    check_dtype(dtype)
    key = os.fsdecode(name_or_path)
    if key in _NAMED:
        target = _NAMED[key]
        if encoder is not None and target in _TAKES_ENCODER:
            kwargs["encoder"] = encoder
        return _resolve(target)(key, device=device, dtype=dtype, **kwargs)
    path = Path(key).expanduser()
    if path.exists():
        backend = detect_backend(path)
        return _resolve(_BACKENDS[backend])(path, device=device, dtype=dtype, **kwargs)
    from .. import hub

    if hub.is_hub_id(key):
        from ..encoders.registry import HUB_OPTIONS

        opts = {k: kwargs.pop(k) for k in HUB_OPTIONS if k in kwargs}
        path, backend = hub.resolve(key, kind="reranker", detect=detect_backend, **opts)
        return _resolve(_BACKENDS[backend])(path, device=device, dtype=dtype, **kwargs)
    raise ModelLoadError(
        f"unknown reranker {key!r}: not a registered name ({', '.join(available_rerankers())}), no such "
        "directory, and not a hub id (org/name or org/name@revision)"
    )


__all__ = ["available_rerankers", "detect_backend", "load_reranker", "register_reranker"]
