"""Fixtures for the `mmembed serve` tests: the demo's two collections over real Tux Paint stamps, built once.

The database holds what `mmembed demo` builds (same collection names, ids, metadata and roots) for 60 stamps
taken across every category: the stamps' images in ``tuxpaint-demo``, and their images *and* captions in ``tuxpaint-demo-mixed``, embedded with
the real default model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

N_STAMPS = 60
COLLECTIONS = ("tuxpaint-demo", "tuxpaint-demo-mixed")


def build_demo_db(db: Path, n: int = N_STAMPS) -> list:  # type: ignore[type-arg]
    from mmembed.data.tuxpaint import load_tuxpaint
    from mmembed.encoders.registry import load_encoder
    from mmembed.store import Store

    everything = load_tuxpaint()
    stamps = everything[:: max(1, len(everything) // n)][:n]  # every category, not only the first folder
    enc = load_encoder("default")
    roots = {s.image_path.parent for s in stamps}
    images = Store(db, encoder=enc, collection="tuxpaint-demo")
    images.record_roots(roots)
    res = images.add([{"image": s.image_path} for s in stamps], ids=[s.id for s in stamps],
                     metadatas=[{"caption": s.caption, "category": s.category} for s in stamps])
    assert not res.skipped
    mixed = Store(db, encoder=enc, collection="tuxpaint-demo-mixed")
    mixed.record_roots(roots)
    res = mixed.add([{"image": s.image_path} for s in stamps] + [s.caption for s in stamps],
                    ids=[f"image:{s.id}" for s in stamps] + [f"text:{s.id}" for s in stamps],
                    metadatas=[{"caption": s.caption} for s in stamps] * 2)
    assert not res.skipped
    return stamps


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:  # type: ignore[type-arg]
    db = tmp_path_factory.mktemp("serve") / "db"
    stamps = build_demo_db(db)
    return db, stamps


@pytest.fixture(scope="session")
def demo_app(demo_db):  # type: ignore[no-untyped-def]
    from mmembed.serve.app import ServeConfig, create_app
    from mmembed.serve.cli import open_stores

    db, _ = demo_db
    stores = open_stores(db, list(COLLECTIONS), None, None, 8000, "default")
    return create_app(stores, ServeConfig())


@pytest.fixture(scope="session")
def client(demo_app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(demo_app) as c:
        yield c
