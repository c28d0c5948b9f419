"""The REST API of `mmembed serve` over the demo's collections: real default model, real stamps, embedded Chroma.

Every search goes through the app (FastAPI TestClient: the ASGI app, its middleware and exception handlers), and
the results are checked against what the same index returns in-process with `mmembed.retrieve`.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

import mmembed

pytestmark = pytest.mark.network_data  # the Tux Paint stamps are fetched once into the cache (apt-get download)


def _png_of(path) -> bytes:  # type: ignore[no-untyped-def]
    return path.read_bytes()


def _stamp(stamps, word: str):  # type: ignore[no-untyped-def]
    return next(s for s in stamps if word in s.caption.lower())


def test_text_search_returns_the_same_hits_as_retrieve_with_thumbnail_links(client, demo_app, demo_db) -> None:
    db, _ = demo_db
    r = client.post("/search", json={"text": "a car", "goal": "images", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "text->image" and body["collection"] == "tuxpaint-demo" and not body["reranked"]
    store = demo_app.state.service.stores["tuxpaint-demo"]
    expected = mmembed.retrieve(store, "a car", task="text->image", k=5)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    assert [round(h["score"], 5) for h in body["hits"]] == [round(h.score, 5) for h in expected]
    top = body["hits"][0]
    assert top["caption"] == "A sports car." and top["modality"] == "image" and top["rank"] == 1
    assert top["metadata"] == {"caption": "A sports car.", "category": "vehicles"}
    link = top["images"][0]
    assert link["name"].endswith(".png") and link["note"] is None
    # the thumbnail: a small WebP of the stored PNG, cached (the second request is served from memory, 304 by ETag)
    cache = demo_app.state.service.thumbs
    misses = cache.misses
    t = client.get(link["url"])
    assert t.status_code == 200 and t.headers["content-type"] == "image/webp"
    thumb = Image.open(io.BytesIO(t.content))
    assert max(thumb.size) <= 256 and cache.misses == misses + 1
    again = client.get(link["url"])
    assert again.content == t.content and cache.misses == misses + 1 and cache.hits >= 1
    assert client.get(link["url"], headers={"If-None-Match": t.headers["etag"]}).status_code == 304
    big = client.get(link["url"] + "&size=512")
    assert big.status_code == 200 and max(Image.open(io.BytesIO(big.content)).size) <= 512
    assert client.get(link["url"] + "&size=100000").status_code == 400


def test_image_upload_finds_the_same_stamp_by_file_and_by_data_uri(client, demo_db, demo_app) -> None:
    _, stamps = demo_db
    duck = _stamp(stamps, "duck")
    data = _png_of(duck.image_path)
    r = client.post("/search", data={"goal": "images", "k": "3"}, files={"image": ("query.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "image->image"
    assert body["hits"][0]["id"] == duck.id
    store = demo_app.state.service.stores["tuxpaint-demo"]
    expected = mmembed.retrieve(store, {"image": duck.image_path}, task="image->image", k=3)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]
    assert body["hits"][0]["score"] == pytest.approx(expected[0].score, abs=1e-5)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    r2 = client.post("/search", json={"image": uri, "goal": "images", "k": 3})
    assert r2.status_code == 200 and [h["id"] for h in r2.json()["hits"]] == [h["id"] for h in body["hits"]]


def test_composed_query_image_plus_words(client, demo_db, demo_app) -> None:
    _, stamps = demo_db
    duck = _stamp(stamps, "duck")
    data = _png_of(duck.image_path)
    files = {"image": ("duck.png", data, "image/png")}
    alone = client.post("/search", data={"goal": "images", "k": "8"}, files=files).json()
    composed = client.post("/search", data={"goal": "edit", "text": "a car", "k": "8"}, files=files)
    assert composed.status_code == 200, composed.text
    body = composed.json()
    assert body["task"] == "image+text->image"
    assert all(h["modality"] == "image" for h in body["hits"])
    # the words change the ranking: the car comes up, which the image alone does not bring into the top 8
    assert "A sports car." in [h["caption"] for h in body["hits"]]
    assert "A sports car." not in [h["caption"] for h in alone["hits"]]
    store = demo_app.state.service.stores["tuxpaint-demo"]
    expected = mmembed.retrieve(store, [{"image": duck.image_path}, "a car"], task="image+text->image", k=8)
    assert [h["id"] for h in body["hits"]] == [h.id for h in expected]


def test_the_task_switch_changes_the_returned_modality(client) -> None:
    common = {"text": "a bird", "k": 5, "collection": "tuxpaint-demo-mixed"}
    images = client.post("/search", json={**common, "goal": "images"}).json()
    texts = client.post("/search", json={**common, "goal": "text"}).json()
    assert images["task"] == "text->image" and texts["task"] == "text->text"
    assert [h["modality"] for h in images["hits"]] == ["image"] * 5
    assert [h["modality"] for h in texts["hits"]] == ["text"] * 5
    assert all(h["images"] and h["images"][0]["url"] for h in images["hits"])
    assert all(not h["images"] and h["text"] for h in texts["hits"])
    # an explicit task name and a free instruction are accepted too
    by_name = client.post("/search", json={**common, "task": "text->text"}).json()
    assert [h["id"] for h in by_name["hits"]] == [h["id"] for h in texts["hits"]]
    free = client.post("/search", json={**common, "instruction": "Retrieve an image that matches the given caption."})
    assert free.status_code == 200 and free.json()["instruction"].startswith("Retrieve an image")
    assert [h["modality"] for h in free.json()["hits"]] == ["image"] * 5


def test_reranker_on_and_off(client) -> None:
    off = client.post("/search", json={"text": "fruit", "goal": "images", "k": 5}).json()
    on = client.post("/search", json={"text": "fruit", "goal": "images", "k": 5, "rerank": True, "fetch_k": 20})
    assert on.status_code == 200, on.text
    on = on.json()
    assert not off["reranked"] and all(h["rerank_score"] is None for h in off["hits"])
    assert on["reranked"] and all(isinstance(h["rerank_score"], float) for h in on["hits"])
    scores = [h["rerank_score"] for h in on["hits"]]
    assert scores == sorted(scores, reverse=True)
    first_stage = client.post("/search", json={"text": "fruit", "goal": "images", "k": 20}).json()
    assert {h["id"] for h in on["hits"]} <= {h["id"] for h in first_stage["hits"]}


def test_metadata_filter(client) -> None:
    r = client.post("/search", json={"text": "a bird", "goal": "images", "k": 10, "filter": {"category": "food"}})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and all(h["metadata"]["category"] == "food" for h in hits)
    # the same filter as a multipart field (what the page sends)
    form = client.post("/search", data={"text": "a bird", "goal": "images", "k": "10", "filter": '{"category": "food"}'})
    assert [h["id"] for h in form.json()["hits"]] == [h["id"] for h in hits]
    bad = client.post("/search", json={"text": "a bird", "filter": {"$nonsense": 1}})
    assert bad.status_code == 400 and "where filter {'$nonsense': 1} is not valid" in bad.json()["error"]
    not_json = client.post("/search", data={"text": "a bird", "filter": "{category: food"})
    assert not_json.status_code == 400 and "JSON object" in not_json.json()["error"]


def test_page_numbers_and_snippets_of_document_chunks(tmp_path, demo_app) -> None:
    from fastapi.testclient import TestClient

    from mmembed.serve.app import ServeConfig, create_app

    enc = demo_app.state.service.stores["tuxpaint-demo"].encoder
    store = mmembed.Store(tmp_path / "db", encoder=enc, collection="manual")
    long_text = "Page three explains how to clean the filter of the coffee machine. " * 20
    store.add(["The coffee machine needs descaling every month.", long_text],
              metadatas=[{"page": 2, "source": "manual.pdf"}, {"page": 3, "source": "manual.pdf"}])
    with TestClient(create_app(store, ServeConfig(reranker=None))) as c:
        hits = c.post("/search", json={"text": "clean the filter", "k": 2}).json()["hits"]
        no_reranker = c.post("/search", json={"text": "clean the filter", "k": 2, "rerank": True})
    assert hits[0]["page"] == 3 and hits[0]["metadata"]["source"] == "manual.pdf"
    assert len(hits[0]["text"]) == 400 and long_text.startswith(hits[0]["text"])
    assert no_reranker.status_code == 400 and "without a reranker" in no_reranker.json()["error"]


@pytest.mark.parametrize("payload, status, message", [
    ({}, 400, "give a query text, an image, or both"),
    ({"text": "   "}, 400, "give a query text, an image, or both"),
    ({"text": "a bird", "task": "text->nothing"}, 400, "unknown task"),
    ({"text": "a bird", "task": "image->image"}, 400, "needs a query of image"),
    ({"text": "a bird", "goal": "edit"}, 400, "needs an image and words"),
    ({"text": "a bird", "k": 0}, 422, "invalid request"),
    ({"text": "a bird", "k": 1000}, 400, "k is at most 100"),
    ({"text": "a bird", "k": 5, "fetch_k": 2, "rerank": True}, 400, "fetch_k (2) must be at least k (5)"),
    ({"text": "a bird", "collection": "nope"}, 404, "unknown collection 'nope'"),
    ({"text": "a bird", "surprise": 1}, 422, "invalid request"),
    ({"image": "/etc/passwd"}, 400, "paths and URLs are not accepted"),
    ({"image": "data:image/png;base64,@@@"}, 400, "not valid base64"),
])
def test_bad_requests_get_clear_errors(client, payload, status, message) -> None:
    r = client.post("/search", json=payload)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_other_request_errors(client) -> None:
    assert client.post("/search", content=b"text=a", headers={"content-type": "text/plain"}).status_code == 415
    bad_json = client.post("/search", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    missing = client.get("/items/no-such-id")
    assert missing.status_code == 404 and "no item 'no-such-id'" in missing.json()["error"]
    assert client.get("/nowhere").status_code == 404


def test_items_health_tasks(client, demo_db) -> None:
    _, stamps = demo_db
    duck = _stamp(stamps, "duck")
    item = client.get(f"/items/{duck.id}")
    assert item.status_code == 200
    assert item.json()["metadata"]["caption"] == duck.caption and item.json()["images"][0]["url"]
    mixed = client.get(f"/items/text:{duck.id}", params={"collection": "tuxpaint-demo-mixed"}).json()
    assert mixed["text"] == duck.caption and mixed["modality"] == "text"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["default"] == "tuxpaint-demo" and not health["writes"]
    assert health["collections"] == {"tuxpaint-demo": {"count": 60, "roots_recorded": True},
                                     "tuxpaint-demo-mixed": {"count": 120, "roots_recorded": True}}
    tasks = client.get("/tasks").json()
    assert [g["label"] for g in tasks["goals"]] == [
        "find images", "find text", "images like this one, changed by my words"]
    assert "image+text->image" in {t["name"] for t in tasks["tasks"]}


def test_page_and_offline_docs_are_served_by_the_app(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI from this server, never a CDN: every script/stylesheet URL is local
    srcs = [part.split('"')[1] for part in docs.text.split("src=")[1:]] + \
           [part.split('"')[1] for part in docs.text.split("href=")[1:]]
    assert srcs and all(s.startswith("/") for s in srcs), srcs
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert json.dumps(spec).count("/items/{item_id}") >= 1
