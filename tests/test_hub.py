"""Hub ids download once, then load from the cache (offline too), through the real huggingface_hub code.

A local HTTP server (tests/fake_hub.py) serves tiny random models the way the hub does and is reached through
``HF_ENDPOINT``; nothing is mocked between ``mmembed.load_encoder("org/name")`` and the socket. mmembed reads
``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` at each call, so the tests switch them with ``monkeypatch`` in-process.
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_hub import FakeHub  # noqa: E402
from test_clip_backends import build_hf  # noqa: E402
from test_rerankers_cross_encoder import build_tiny_bert  # noqa: E402

import mmembed  # noqa: E402
from mmembed import ModelLoadError  # noqa: E402
from mmembed.hub import parse_hub_id  # noqa: E402

TEXTS = ["a red car", "the cat"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-models")
    out = {"v1": build_hf("clip", root / "clip-v1", seed=0), "v2": build_hf("clip", root / "clip-v2", seed=1),
           "ce": build_tiny_bert(root / "ce")}
    # files a repo carries that mmembed must not fetch
    (out["v1"] / "onnx").mkdir()
    (out["v1"] / "onnx" / "model.onnx").write_bytes(b"\0" * 4096)
    (out["v1"] / "modeling_custom.py").write_text("raise SystemExit('repository code must never run')\n")
    (out["v1"] / "README.md").write_text("# tiny clip\n")
    return out


@pytest.fixture
def hub(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    fake = FakeHub()
    fake.add("acme/tiny-clip", models["v1"])
    fake.add("acme/tiny-clip", models["v2"], ref="v2")
    fake.add("acme/tiny-ce", models["ce"])
    fake.add("acme/gated-clip", models["v2"], gated=True)
    fake.add("acme/a-dataset", {"README.md": b"# data\n", "train.csv": b"a,b\n1,2\n"})
    fake.add("acme/llm", {"config.json": b'{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}',
                          "model.safetensors": b"x" * 100})
    with fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        yield fake


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hub-cache"


def _vectors(enc) -> np.ndarray:
    return enc.encode_documents(TEXTS)


def test_hub_ids_are_parsed() -> None:
    assert parse_hub_id("org/name") == ("org/name", None)
    assert parse_hub_id("Qwen/Qwen3-VL-Embedding-2B@v1.0") == ("Qwen/Qwen3-VL-Embedding-2B", "v1.0")
    assert parse_hub_id("./local/dir") is None and parse_hub_id("a/b/c") is None
    assert parse_hub_id("default") is None and parse_hub_id("pkg.mod:factory") is None


def test_download_once_then_offline_from_the_cache(hub: FakeHub, models, cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    enc = mmembed.load_encoder("acme/tiny-clip", cache_dir=cache, progress=True)
    local = mmembed.load_encoder(models["v1"])
    np.testing.assert_array_equal(_vectors(enc), _vectors(local))
    assert enc.dim == local.dim
    err = capfd.readouterr().err
    assert "Fetching" in err  # huggingface_hub's own progress bar
    got = {p for m, p in hub.requests if m == "GET" and "/resolve/" in p}
    fetched = {p.split("/resolve/")[1].split("/", 1)[1] for p in got}
    assert "model.safetensors" in fetched and "config.json" in fetched and "tokenizer.json" in fetched
    assert not {"onnx/model.onnx", "modeling_custom.py", "README.md"} & fetched  # only what the backend reads
    assert any(p.startswith("/api/models/acme/tiny-clip/revision/main") for _, p in hub.requests)
    snap = next((cache / "models--acme--tiny-clip" / "snapshots").iterdir())
    assert (snap / "model.safetensors").is_symlink()  # the standard cache layout: blobs + snapshots

    # offline: the hub is gone, HF_HUB_OFFLINE=1, same result from the cache and not one request
    hub.stop()
    n = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)
    np.testing.assert_array_equal(_vectors(again), _vectors(local))
    assert len(hub.requests) == n
    # network down but not declared offline: huggingface_hub falls back to the cache
    monkeypatch.delenv("HF_HUB_OFFLINE")
    np.testing.assert_array_equal(_vectors(mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)),
                                  _vectors(local))


def test_revisions(hub: FakeHub, models, cache: Path) -> None:
    main = _vectors(mmembed.load_encoder("acme/tiny-clip", cache_dir=cache))
    v2 = _vectors(mmembed.load_encoder("acme/tiny-clip@v2", cache_dir=cache))
    np.testing.assert_array_equal(v2, _vectors(mmembed.load_encoder(models["v2"])))
    assert np.abs(main - v2).max() > 1e-3
    sha = hub.repos["acme/tiny-clip"].refs["v2"]
    by_commit = mmembed.load_encoder("acme/tiny-clip", revision=sha, cache_dir=cache)
    np.testing.assert_array_equal(_vectors(by_commit), v2)
    with pytest.raises(ModelLoadError, match=r"acme/tiny-clip has no revision 'nope'"):
        mmembed.load_encoder("acme/tiny-clip@nope", cache_dir=cache)


def test_reranker_by_hub_id(hub: FakeHub, models, cache: Path) -> None:
    rr = mmembed.load_reranker("acme/tiny-ce", cache_dir=cache, device="cpu")
    local = mmembed.load_reranker(models["ce"], device="cpu")
    cands = ["a red apple", "the blue sea"]
    assert rr.score("what colour is the sea ?", cands) == local.score("what colour is the sea ?", cands)


@pytest.mark.parametrize(("name", "message"), [
    ("acme/nothing-here", r"acme/nothing-here: no such model on the hub .*private.*hf auth login"),
    ("acme/gated-clip", r"acme/gated-clip is a gated model: accept its terms .*hf auth login"),
    ("acme/a-dataset", r"acme/a-dataset is not a model mmembed can run as an encoder"),
    ("acme/llm", r"acme/llm is not a model mmembed can run as an encoder: .*'llama'"),
])
def test_bad_names_are_clear(hub: FakeHub, cache: Path, name: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        mmembed.load_encoder(name, cache_dir=cache)


def test_offline_with_an_empty_cache_says_how_to_download(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"(?s)acme/tiny-clip is not in the Hugging Face cache .*offline mode "
                       r"is on.*python -c \"import mmembed; mmembed.load_encoder\('acme/tiny-clip'\)\".*hf download"):
        mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelLoadError, match=r"not in the Hugging Face cache .*load_reranker\('acme/x@v1'\)"):
        mmembed.load_reranker("acme/x@v1", cache_dir=cache, local_files_only=True)


def test_network_down_with_an_empty_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelLoadError, match=r"acme/tiny-clip: the hub could not be reached .*python -c"):
        mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)


def test_truncated_download_leaves_nothing_half_written(hub: FakeHub, models, cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hub.truncate.add("acme/tiny-clip/model.safetensors")
    with pytest.raises(ModelLoadError, match=r"download of acme/tiny-clip was cut short .*run the same command"):
        mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)
    assert not list(cache.rglob("*.incomplete"))
    assert not list(cache.rglob("model.safetensors"))  # no partial blob was linked into the snapshot
    # offline now: the cache knows the snapshot is incomplete and says so
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"acme/tiny-clip is only partly in the Hugging Face cache"):
        mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)
    # the next try online completes it
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.truncate.clear()
    enc = mmembed.load_encoder("acme/tiny-clip", cache_dir=cache)
    np.testing.assert_array_equal(_vectors(enc), _vectors(mmembed.load_encoder(models["v1"])))


def test_pre_populated_cache_offline(models, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache copied from another machine (no tree listing): the snapshot layout alone is enough."""
    sha = "1" * 40
    repo = cache / "models--acme--copied"
    shutil.copytree(models["v2"], repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = mmembed.load_encoder("acme/copied", cache_dir=cache)
    np.testing.assert_array_equal(_vectors(enc), _vectors(mmembed.load_encoder(models["v2"])))
    assert "acme/copied" in mmembed.hub.cached_models(cache)
    (repo / "snapshots" / sha / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="only partly in the Hugging Face cache.*weights are missing"):
        mmembed.load_encoder("acme/copied", cache_dir=cache)


def test_environment_cache_is_used(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    mmembed.load_encoder("acme/tiny-clip")
    assert (tmp_path / "home" / "hub" / "models--acme--tiny-clip" / "refs" / "main").is_file()


def test_local_loads_leave_the_process_online(models, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a local cross-encoder or the minilm text tower must not switch the whole process offline."""
    import os

    from mmembed.encoders.mini import FrozenTextTower

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    rr = mmembed.load_reranker(models["ce"], device="cpu")
    tower = FrozenTextTower("minilm")
    assert tower.encode(["a red car"]).shape == (1, 384)
    assert rr.score("the sea", ["the blue sea"])[0] == rr.score("the sea", ["the blue sea"])[0]
    assert "HF_HUB_OFFLINE" not in os.environ
