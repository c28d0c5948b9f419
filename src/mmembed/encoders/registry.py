"""``load_encoder``: a registry of named models plus detection of local model directories.

Like ``open_clip.create_model_and_transforms`` / ``SentenceTransformer(name)``: give a registry name or a
path. Backends are imported only when used, so ``import mmembed`` stays light.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelLoadError, describe
from .base import Encoder

# name -> "module:function"; the function takes (name_or_path, **kwargs) and returns an Encoder.
_NAMED: dict[str, str] = {
    "default": "mmembed.encoders.mini:load_default",
    "mmembed-mini": "mmembed.encoders.mini:load_default",
    "mmembed-mini-towers": "mmembed.encoders.mini:load_default_towers",
    "mmembed-mini-v3": "mmembed.encoders.mini:load_default",
    "mmembed-mini-v3-towers": "mmembed.encoders.mini:load_default_towers",
    "mmembed-mini-v2": "mmembed.encoders.mini:load_v2",
    "mmembed-mini-v2-towers": "mmembed.encoders.mini:load_v2",
    "nvidia/MM-Embed": "mmembed.encoders.mmembed_llava:load_from_hub_cache",
}

# backend key -> "module:function" taking (path, **kwargs). Keys are what `detect_backend` returns.
_BACKENDS: dict[str, str] = {
    "mini": "mmembed.encoders.mini:load_mini",
    "hf-clip": "mmembed.encoders.clip:load_hf_clip",
    "open_clip": "mmembed.encoders.clip:load_open_clip",
    "mm-embed": "mmembed.encoders.mmembed_llava:load_mmembed",
    "qwen3-vl": "mmembed.encoders.qwen3_vl:load_qwen3_vl",
    "sentence-transformers": "mmembed.encoders.sentence_transformers:load_sentence_transformer",
}


# "package.module:factory" -- an encoder that is neither registered nor a directory (plugins, test encoders).
_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def register_encoder(name: str, target: str | Callable[..., Encoder]) -> None:
    """Register a named encoder: ``target`` is a callable or a ``"module:function"`` string."""
    _NAMED[name] = target  # type: ignore[assignment]


def register_backend(key: str, target: str | Callable[..., Encoder]) -> None:
    _BACKENDS[key] = target  # type: ignore[assignment]


def available_encoders() -> list[str]:
    return sorted(_NAMED)


def _resolve(target: str | Callable[..., Encoder]) -> Callable[..., Encoder]:
    if callable(target):
        return target
    module, _, func = target.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in func.split("."):
        obj = getattr(obj, attr)
    return obj


def _load_spec(spec: str, **kwargs: Any) -> Encoder:
    """Call the factory named by ``"package.module:factory"`` like a registered target."""
    try:
        factory = _resolve(spec)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"encoder spec {spec!r}: cannot import it ({exc})") from exc
    encoder = factory(spec, **kwargs)
    if not isinstance(encoder, Encoder):
        raise ModelLoadError(f"encoder spec {spec!r} returned {type(encoder).__name__}, not an mmembed Encoder")
    return encoder


def detect_backend(path: Path) -> str:
    """Which backend can load the model directory ``path`` (by the files it holds).

    Order: ``mmembed_config.json``, ``open_clip_config.json``, then a ``config.json`` naming a model mmembed
    runs natively (MM-Embed, Qwen3-VL-Embedding, CLIP/SigLIP) -- it wins over sentence-transformers' files,
    so Qwen3-VL-Embedding (which ships both) runs on the native backend, proven equal to the
    sentence-transformers path --, then ``modules.json`` (any other sentence-transformers model)."""
    if path.is_file():
        raise ModelLoadError(
            f"{path} is a file; give the model directory (an open_clip model needs open_clip_config.json "
            "beside its weights)"
        )
    mm_cfg = path / "mmembed_config.json"
    if mm_cfg.is_file():
        backend = json.loads(mm_cfg.read_text()).get("backend")
        if backend not in _BACKENDS:
            raise ModelLoadError(f"{mm_cfg} names unknown backend {backend!r}; known: {sorted(_BACKENDS)}")
        return backend
    if (path / "open_clip_config.json").is_file():
        return "open_clip"
    cfg_file = path / "config.json"
    if cfg_file.is_file():
        try:
            cfg = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{cfg_file} is not valid JSON: {exc}") from exc
        archs = cfg.get("architectures") or []
        model_type = cfg.get("model_type", "")
        if "NVMMEmbedModel" in archs or model_type in ("nvmmembed", "NVMMEmbed"):
            return "mm-embed"
        if model_type in ("clip", "siglip", "siglip2"):
            return "hf-clip"
        if model_type == "qwen3_vl":
            return "qwen3-vl"
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        raise ModelLoadError(
            f"{path}: config.json has model_type {model_type!r} / architectures {archs}, which mmembed cannot "
            "load as an encoder (supported: MM-Embed, Qwen3-VL-Embedding, CLIP, SigLIP, open_clip, "
            "mmembed-mini, and sentence-transformers models with a modules.json)"
        )
    if (path / "modules.json").is_file():
        return "sentence-transformers"
    raise ModelLoadError(
        f"{path} holds no model mmembed recognises (looked for mmembed_config.json, open_clip_config.json, "
        "config.json, modules.json)"
    )


def load_encoder(
    name: str | os.PathLike[str] = "default",
    *,
    device: str | None = None,
    dtype: str | None = None,
    **kwargs: Any,
) -> Encoder:
    """Load an encoder by registry name (``default``, ``mmembed-mini``, ``nvidia/MM-Embed``) or local path.

    A ``"package.module:factory"`` spec loads an unregistered encoder (a plugin, or a test encoder for a
    ``mmembed`` subprocess): ``factory`` is called like a :func:`register_encoder` target.

    ``device`` ``None`` picks CUDA/MPS when present, else CPU; ``dtype`` ``None`` picks half precision on
    accelerators and float32 on CPU. Extra keyword arguments go to the backend (for example
    ``allow_remote=True`` to let it fetch http(s) images).

    A hub id (``org/name`` or ``org/name@revision``) that is neither registered nor a local directory is
    downloaded once into the Hugging Face cache (only the files its backend reads) and loaded from there
    afterwards; ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` use the cache only (see :mod:`mmembed.hub`).
    """
    if isinstance(name, Encoder):
        raise InputError(f"load_encoder got an Encoder ({describe(name)}); it is already loaded: use it directly")
    if not isinstance(name, (str, os.PathLike)) or not os.fspath(name):
        raise InputError(f"load_encoder: name must be a registered name ({', '.join(available_encoders())}), "
                         f"a model directory or 'package.module:factory', got {describe(name)}")
    key = os.fspath(name)
    if not isinstance(key, str):
        key = os.fsdecode(key)
    from ._torch import check_device, check_dtype

    check_device(device)
    check_dtype(dtype)
    if key in _NAMED:
        return _resolve(_NAMED[key])(key, device=device, dtype=dtype, **kwargs)
    path = Path(key).expanduser()
    if path.exists():
        backend = detect_backend(path)
        return _resolve(_BACKENDS[backend])(path, device=device, dtype=dtype, **kwargs)
    if _SPEC.match(key):
        return _load_spec(key, device=device, dtype=dtype, **kwargs)
    from .. import hub

    if hub.is_hub_id(key):
        return load_from_hub(key, device=device, dtype=dtype, **kwargs)
    raise ModelLoadError(
        f"unknown encoder {key!r}: not a registered name ({', '.join(available_encoders())}), no such "
        "directory, not a hub id (org/name or org/name@revision) and not a 'package.module:factory' spec"
    )


#: ``load_encoder`` options that steer the download rather than the backend.
HUB_OPTIONS = ("cache_dir", "local_files_only", "revision", "token", "progress")


def load_from_hub(name: str, *, device: str | None = None, dtype: str | None = None, **kwargs: Any) -> Encoder:
    """A hub id (``org/name[@revision]``): download what the backend needs once (see :mod:`mmembed.hub`),
    then load the snapshot directory like a local one. ``cache_dir``, ``local_files_only``, ``revision``,
    ``token`` and ``progress`` steer the download; other options go to the backend."""
    from .. import hub

    opts = {k: kwargs.pop(k) for k in HUB_OPTIONS if k in kwargs}
    path, backend = hub.resolve(name, kind="encoder", detect=detect_backend, **opts)
    return _resolve(_BACKENDS[backend])(path, device=device, dtype=dtype, **kwargs)
