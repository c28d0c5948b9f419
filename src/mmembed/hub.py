"""Hub ids -> local model directories, with ``huggingface_hub`` (download once, then the cache, offline too).

``load_encoder("org/name")`` / ``load_reranker("org/name@revision")`` come here when the name is not a
registered name and not an existing directory. Resolution is done in two ``snapshot_download`` calls so that
only what the backend reads is fetched:

1. the small files that say what the model is (``config.json``, ``modules.json`` and the other JSON files,
   tokenizer files, chat templates), from which the registry picks the backend exactly as for a local
   directory;
2. that backend's weights (``*.safetensors``; ``*.bin`` only where a repo has no safetensors; never ONNX /
   OpenVINO exports, never ``*.py``: mmembed does not run repository code).

The standard cache and environment are honoured: ``HF_HUB_CACHE`` / ``HF_HOME`` (or ``cache_dir=``),
``HF_ENDPOINT``, ``HF_TOKEN``, and ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``), which use the cache
only. The environment is read at each call (``huggingface_hub`` reads some of it once, at import), so a
process can switch to offline mode or to another endpoint without restarting.

Every failure is a :class:`~mmembed.errors.ModelLoadError` that names the model and says what to do.
``huggingface_hub`` writes each file to a temporary name and moves it into place only when complete, so an
interrupted or truncated download leaves nothing that a retry would trust.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

#: ``org/name`` with an optional ``@revision`` (branch, tag or commit).
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[\w./-]+))?$")

#: Files that identify a model and its tokenizer/processor; small, so all of them are fetched first.
METADATA_PATTERNS = ["*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
#: Never fetched: other runtimes' exports and repository code.
IGNORE_PATTERNS = ["onnx/*", "*/onnx/*", "openvino/*", "*/openvino/*", "*.onnx", "*.onnx_data", "*.py",
                   "*.msgpack", "*.h5", "*.ot", "*.gguf"]
#: Weights a backend reads, by backend key (the keys :func:`~mmembed.encoders.detect_backend` returns).
WEIGHT_PATTERNS: dict[str, list[str]] = {
    "open_clip": ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
    "mini": ["model.safetensors"],
}
DEFAULT_WEIGHTS = ["*.safetensors"]
BIN_FALLBACK = ["*.bin"]


def parse_hub_id(name: str) -> tuple[str, str | None] | None:
    """``("org/name", revision or None)`` when ``name`` looks like a hub id, else ``None``."""
    m = HUB_ID.match(name)
    if m is None:
        return None
    return m.group("repo"), m.group("rev")


def is_hub_id(name: str) -> bool:
    return parse_hub_id(name) is not None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_mode(local_files_only: bool | None = None) -> bool:
    """True when the cache alone must be used (argument, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    if local_files_only:
        return True
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache directory, read from the environment now (not at import)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def download_command(repo_id: str, revision: str | None, kind: str) -> str:
    """The one command that puts exactly what mmembed needs into the cache (run where the hub is reachable)."""
    name = repo_id + (f"@{revision}" if revision else "")
    func = "load_reranker" if kind == "reranker" else "load_encoder"
    return f"python -c \"import mmembed; mmembed.{func}('{name}')\""


def _what_to_do(repo_id: str, revision: str | None, kind: str) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (f"Download it once where the hub is reachable: {download_command(repo_id, revision, kind)} "
            f"(or `hf download {repo_id}{rev}`, which fetches every file), then run offline with "
            "HF_HUB_OFFLINE=1 and the same HF_HOME/HF_HUB_CACHE")


def _errors() -> dict[str, type[BaseException]]:
    from huggingface_hub import errors

    names = ("GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError", "LocalEntryNotFoundError",
             "HfHubHTTPError", "DisabledRepoError")
    out = {n: getattr(errors, n) for n in names}
    out["IncompleteSnapshotError"] = getattr(errors, "IncompleteSnapshotError", out["LocalEntryNotFoundError"])
    return out


def _translate(exc: BaseException, repo_id: str, revision: str | None, kind: str, offline: bool,
               where: Path) -> ModelLoadError:
    """One clear ModelLoadError for whatever huggingface_hub raised."""
    e = _errors()
    label = repo_id + (f"@{revision}" if revision else "")
    todo = _what_to_do(repo_id, revision, kind)
    if isinstance(exc, e["GatedRepoError"]):
        msg = (f"{label} is a gated model: accept its terms on the model's hub page with your account, then log in "
               "here with `hf auth login` (or set HF_TOKEN) and try again")
    elif isinstance(exc, e["DisabledRepoError"]):
        msg = f"{label}: access to this repository has been disabled on the hub"
    elif isinstance(exc, e["RepositoryNotFoundError"]):
        msg = (f"{label}: no such model on the hub (check the spelling, org/name), or it is private: log in with "
               "`hf auth login` (or set HF_TOKEN) with an account that can read it")
    elif isinstance(exc, e["RevisionNotFoundError"]):
        msg = (f"{repo_id} has no revision {revision!r} on the hub (a branch, tag or commit hash); "
               f"use {repo_id} for the default branch")
    elif isinstance(exc, e["IncompleteSnapshotError"]):
        msg = f"{label} is only partly in the Hugging Face cache ({where}) and the hub cannot be used now. {todo}"
    elif isinstance(exc, e["LocalEntryNotFoundError"]):
        if offline:
            msg = (f"{label} is not in the Hugging Face cache ({where}) and offline mode is on "
                   f"(HF_HUB_OFFLINE=1 or local_files_only=True). {todo}")
        else:
            msg = (f"{label}: the hub could not be reached (network down, or HF_ENDPOINT wrong?) and the Hugging "
                   f"Face cache ({where}) has no copy. {todo}")
    elif isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        first = str(exc).splitlines()[0]
        msg = (f"the download of {label} was cut short ({first}). The partial file was discarded; run the same "
               "command again to fetch it")
    elif isinstance(exc, e["HfHubHTTPError"]):
        msg = f"{label}: the hub answered with an error ({exc}). Try again later"
    else:
        msg = f"{label}: download failed ({type(exc).__name__}: {exc}). {todo}"
    return ModelLoadError(msg)


def _snapshot(repo_id: str, revision: str | None, *, allow: list[str], cache: Path, offline: bool,
              kind: str, progress: bool, token: str | bool | None, asked: str | None) -> Path:
    """One ``snapshot_download``; ``asked`` is the revision the user gave (for messages)."""
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("HF_ENDPOINT")
    if endpoint:
        kwargs["endpoint"] = endpoint.rstrip("/")
    if not progress:
        from tqdm.auto import tqdm

        class _Silent(tqdm):  # type: ignore[misc, type-arg]
            def __init__(self, *a: Any, **k: Any) -> None:
                k["disable"] = True
                super().__init__(*a, **k)

        kwargs["tqdm_class"] = _Silent
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=str(cache), allow_patterns=allow,
                                   ignore_patterns=IGNORE_PATTERNS, local_files_only=offline, token=token,
                                   **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear error
        raise _translate(exc, repo_id, asked, kind, offline, cache) from exc
    return Path(folder)


def _cached_listing(repo_id: str, revision: str, cache: Path) -> list[str] | None:
    try:
        from huggingface_hub import get_cached_repo_tree
    except ImportError:  # older huggingface_hub
        return None
    try:
        return [f.path for f in get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache)]
    except Exception:  # noqa: BLE001 - no listing cached: decide from the files present
        return None


def weight_patterns(backend: str, listing: list[str] | None) -> list[str]:
    """What to fetch for ``backend``: its own files, else safetensors (``*.bin`` when a repo has none)."""
    if backend in WEIGHT_PATTERNS:
        return WEIGHT_PATTERNS[backend]
    if listing is not None and not any(p.endswith(".safetensors") for p in listing):
        return BIN_FALLBACK
    return DEFAULT_WEIGHTS


def resolve(
    name: str,
    *,
    kind: str,
    detect: Callable[[Path], str],
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    progress: bool | None = None,
) -> tuple[Path, str]:
    """Download (or find in the cache) the model ``name`` = ``org/name[@revision]``.

    ``detect`` is the registry's backend detection (files -> backend key); ``kind`` is ``"encoder"`` or
    ``"reranker"`` (for messages). Returns the snapshot directory and the backend key.
    """
    parsed = parse_hub_id(name)
    if parsed is None:
        raise ModelLoadError(f"{name!r} is not a hub id (org/name or org/name@revision)")
    repo_id, rev = parsed
    if revision is not None and rev is not None and revision != rev:
        raise ModelLoadError(f"{name}: revision given twice ({rev!r} in the name, revision={revision!r})")
    rev = revision or rev
    offline = offline_mode(local_files_only)
    cache = hub_cache_dir(cache_dir)
    show = progress if progress is not None else not _env_true("HF_HUB_DISABLE_PROGRESS_BARS")
    try:
        folder = _snapshot(repo_id, rev, allow=METADATA_PATTERNS, cache=cache, offline=offline, kind=kind,
                           progress=show, token=token, asked=rev)
    except ModelLoadError as exc:
        if "@" in name:
            raise
        # "org/name" is also how a relative directory is written: say that none exists, in case one was meant
        raise ModelLoadError(f"{exc} (no local directory {name!r} exists either)") from exc.__cause__
    label = repo_id + (f"@{rev}" if rev else "")
    if not folder.is_dir():  # nothing matched: no config, no tokenizer, no module list
        raise ModelLoadError(f"{label} is not a model mmembed can run as an {kind}: the repository has none of "
                             "the files that describe a model (config.json, modules.json, open_clip_config.json)")
    try:
        backend = detect(folder)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{label} is not a model mmembed can run as an {kind}: "
                             f"{str(exc).replace(str(folder), 'the repository')}") from exc
    listing = _cached_listing(repo_id, folder.name, cache)
    patterns = weight_patterns(backend, listing)
    folder = _snapshot(repo_id, folder.name, allow=patterns, cache=cache, offline=offline, kind=kind,
                       progress=show, token=token, asked=rev)
    import fnmatch

    present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    if not any(fnmatch.fnmatch(p, pat) for p in present for pat in patterns):
        if listing is not None and not any(fnmatch.fnmatch(p, pat) for p in listing for pat in patterns):
            raise ModelLoadError(f"{label} has no weights mmembed can read (looked for {', '.join(patterns)}); "
                                 "it is not a model mmembed can run")
        raise ModelLoadError(f"{label} is only partly in the Hugging Face cache ({cache}): its weights are "
                             f"missing. {_what_to_do(repo_id, rev, kind)}")
    return folder, backend


def cached_models(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """``{repo_id: bytes on disk}`` for the models in the local hub cache (no network)."""
    from huggingface_hub import scan_cache_dir

    cache = hub_cache_dir(cache_dir)
    if not cache.is_dir():
        return {}
    try:
        info = scan_cache_dir(cache)
    except Exception:  # noqa: BLE001 - an unreadable cache lists nothing rather than failing a table
        return {}
    return {r.repo_id: int(r.size_on_disk) for r in info.repos if r.repo_type == "model"}


__all__ = ["HUB_ID", "hub_cache_dir", "cached_models", "download_command", "is_hub_id", "offline_mode",
           "parse_hub_id", "resolve", "weight_patterns"]
