"""Property-based tests (hypothesis) for input coercion and metadata sanitising.

Coercion: any value either becomes an ``Interleaved`` or raises ``InputError`` (never another exception),
order and content are kept, and the content hash depends on content only. Sanitising: whatever comes out is
accepted by a real Chroma collection and read back unchanged, every scalar leaf survives under its dotted key,
and sanitising is idempotent.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmembed import ImagePart, InputError, Interleaved, TextPart, coerce
from mmembed.metadata import INT64_MAX, INT64_MIN, RESERVED_PREFIX, sanitize_metadata

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text including the awkward characters: lone surrogates, NUL, Chroma's '$'/'#' and our '.' separator
awkward_chars = st.one_of(st.characters(), st.sampled_from(["\udcff", "\ud800", "\x00", "$", "#", ".", " "]))
texts = st.text(awkward_chars, max_size=12)
solid_texts = st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=20)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(INT64_MIN, INT64_MAX), st.floats(), texts,
    st.binary(max_size=8), st.builds(Path, solid_texts),
)


# ---- coercion ------------------------------------------------------------------------------------------
junk = st.recursive(
    st.one_of(scalars, st.builds(lambda: Image.new("RGB", (2, 2))), st.just(object())),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.sampled_from(["text", "image", "images", "type", "url", "other"]), inner, max_size=3),
    ),
    max_leaves=8,
)


@SETTINGS
@given(junk)
def test_coerce_returns_interleaved_or_raises_input_error(value: Any) -> None:
    try:
        item = coerce(value, where="the input")
    except InputError as exc:
        assert str(exc).startswith("the input"), str(exc)
        return
    assert isinstance(item, Interleaved) and item.parts
    for part in item.parts:
        assert isinstance(part, (TextPart, ImagePart))
        if isinstance(part, TextPart):
            part.text.encode("utf-8")  # always valid Unicode
    assert coerce(item).parts == item.parts  # idempotent


@SETTINGS
@given(st.text(min_size=1, max_size=200).filter(lambda s: s.strip()))
def test_any_nonblank_text_is_one_text_part(text: str) -> None:
    item = coerce(text)
    assert item.parts == [TextPart(text=text)] and item.text == text and item.modality == "text"


part_values = st.one_of(
    solid_texts,
    st.integers(0, 255).map(lambda c: ("img", c)),
)


def build_parts(spec: list[Any]) -> list[Any]:
    return [Image.new("RGB", (3, 3), (v[1], 0, 0)) if isinstance(v, tuple) else v for v in spec]


@SETTINGS
@given(st.lists(part_values, min_size=1, max_size=6))
def test_list_order_and_modality_are_kept(spec: list[Any]) -> None:
    item = coerce(build_parts(spec))
    kinds = ["image" if isinstance(v, tuple) else "text" for v in spec]
    assert [p.type for p in item.parts] == kinds
    assert item.texts == [v for v in spec if isinstance(v, str)]
    has_text, has_image = "text" in kinds, "image" in kinds
    assert item.modality == ("image+text" if has_text and has_image else "image" if has_image else "text")


@SETTINGS
@given(st.lists(part_values, min_size=1, max_size=5), st.lists(part_values, min_size=1, max_size=5))
def test_content_hash_depends_on_content_only(a: list[Any], b: list[Any]) -> None:
    ha, ha_again = coerce(build_parts(a)).content_hash(), coerce(build_parts(a)).content_hash()
    hb = coerce(build_parts(b)).content_hash()
    assert ha == ha_again  # same content, fresh objects: same id
    assert (ha == hb) == (a == b)  # different content (incl. ["ab", "c"] vs ["a", "bc"]): different id


# ---- metadata sanitising -----------------------------------------------------------------------------------
keys = st.one_of(texts, st.integers(-3, 3), st.sampled_from(["a", "b", "a.b", "$x", "#y", "mmembed:h"]))
leaves = st.one_of(scalars, st.lists(scalars, max_size=4), st.frozensets(st.integers(-5, 5), max_size=3),
                   st.builds(np.float64, st.floats(allow_nan=False)))
nested = st.recursive(leaves, lambda inner: st.dictionaries(keys, inner, max_size=4), max_leaves=12)
metadatas = st.dictionaries(keys, nested, max_size=5)


def is_storable_scalar(v: Any) -> bool:
    if isinstance(v, bool) or isinstance(v, float):
        return True
    if isinstance(v, int):
        return INT64_MIN <= v <= INT64_MAX
    if isinstance(v, str):
        v.encode("utf-8")
        return True
    return False


def leaf_paths(meta: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(leaf_paths(v, key))
        else:
            out[key] = v
    return out


@pytest.fixture(scope="module")
def chroma_collection() -> Any:
    client = chromadb.EphemeralClient()
    return client.get_or_create_collection("properties", embedding_function=None)


@SETTINGS
@given(metadatas)
def test_sanitised_metadata_is_flat_valid_and_idempotent(meta: dict[Any, Any]) -> None:
    try:
        clean = sanitize_metadata(meta, where="record 7 metadata")
    except InputError as exc:
        assert str(exc).startswith("record 7 metadata"), str(exc)
        return
    # every leaf that holds a value (not None, not an empty or all-None container) survives under its dotted key
    holding = {k.encode("utf-8", "backslashreplace").decode() for k, v in leaf_paths(meta).items()
               if v is not None and not (isinstance(v, (list, frozenset)) and all(x is None for x in v))}
    assert set(clean or {}) == holding
    if clean is None:
        return
    for key, value in clean.items():
        assert isinstance(key, str) and key and not key.startswith(("$", "#", RESERVED_PREFIX))
        key.encode("utf-8")
        if isinstance(value, list):
            assert value and len({type(v) for v in value}) == 1 and all(is_storable_scalar(v) for v in value)
        else:
            assert is_storable_scalar(value), (key, value)
    assert sanitize_metadata(clean) == clean  # idempotent (NaN and inf became strings)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(metadatas)
def test_chroma_stores_sanitised_metadata_unchanged(chroma_collection: Any, meta: dict[Any, Any]) -> None:
    try:
        clean = sanitize_metadata(meta)
    except InputError:
        return
    rid = uuid.uuid4().hex  # a fresh record: Chroma merges metadata into an existing one
    chroma_collection.add(ids=[rid], embeddings=[[1.0, 0.0]], metadatas=[clean] if clean else None)
    stored = chroma_collection.get(ids=[rid], include=["metadatas"])["metadatas"][0]
    assert same_metadata(stored, clean), (stored, clean)


def same_metadata(a: Any, b: Any) -> bool:
    """Equal, floats up to the last bit or two (Chroma's float round trip is not always bit-exact)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_metadata(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_metadata(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) or a == b
    return type(a) is type(b) and a == b
