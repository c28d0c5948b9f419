"""The Open Clip Art source (v3 training slice and the openclipart-dev development set)."""

from __future__ import annotations

import numpy as np
import pytest

from mmembed.data import openclipart as oc

SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="60.00000pt" height="30.00000pt">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>Pop Can 02</dc:title>
    <dc:subject><rdf:Bag><rdf:li>food</rdf:li><rdf:li>Beverage</rdf:li><rdf:li>food</rdf:li></rdf:Bag></dc:subject>
    <dc:publisher><cc:Agent rdf:about="http://www.openclipart.org/"><dc:title>Open Clip Art Project</dc:title>
    </cc:Agent></dc:publisher>
  </cc:Work></rdf:RDF></metadata>
  <rect x="0" y="0" width="80" height="40" fill="#d00000"/>
</svg>"""


def test_title_and_keywords_come_from_the_work_not_its_publisher():
    assert oc.parse_metadata(SVG) == ("Pop Can", ("food", "beverage"))
    assert oc.parse_metadata("<svg/>") == ("", ())


def test_captions_and_concepts():
    assert oc.clean_title("stack_of_books 01") == "stack of books"
    assert oc.stem_caption("roller_blader_01") == "roller blader"
    assert oc.concept_key("Pop Can 02!") == "pop can"
    # the development split is a fixed function of the concept: same answer for every spelling of it
    assert oc.is_dev_concept(oc.concept_key("Pop Can")) == oc.is_dev_concept(oc.concept_key("pop  can 7"))


def test_a_root_sized_in_points_renders_at_its_aspect():
    pytest.importorskip("resvg_py")
    fixed = oc.normalise_root(SVG)
    assert 'width="80.000"' in fixed and 'viewBox="0 0 80.000 40.000"' in fixed
    from mmembed.data.training_sets import render_svg

    img = render_svg(fixed, 96)
    red = (img[..., 0] > 150) & (img[..., 1] < 80)
    rows = np.flatnonzero(red.any(axis=1))
    assert red.any(axis=0).sum() == 96 and 44 <= len(rows) <= 52  # 2:1, centred on white


def _drawing(seed: int, size: int = 96, box: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    blob = rng.integers(0, 200, size=(12, 12, 3), dtype=np.uint8).repeat(5, 0).repeat(5, 1)
    off = (size - box) // 2
    img[off:off + box, off:off + box] = blob[:box, :box]
    return img


def test_near_duplicates_survive_reframing_and_mirroring_but_others_do_not():
    stamp = _drawing(1)
    small = np.full_like(stamp, 255)  # the same drawing at half the size, off centre
    half = stamp[18:78, 18:78][::2, ::2]
    small[5:35, 50:80] = half
    mirrored = stamp[:, ::-1]
    other = _drawing(2)
    best, dup = oc.tuxpaint_near_duplicates(np.stack([small, mirrored, other]), stamp[None])
    assert dup.tolist() == [True, True, False], best


def test_a_looser_match_counts_only_with_a_shared_word():
    stamp = _drawing(1)
    noisy = (0.5 * stamp + 0.5 * _drawing(2)).astype(np.uint8)  # the drawing partly repainted
    best, dup = oc.tuxpaint_near_duplicates(noisy[None], stamp[None], ["red car"], ["A blue house."])
    assert oc.NAMED_DUPLICATE_CORRELATION <= best[0] < oc.DUPLICATE_CORRELATION and not dup[0]
    _, dup = oc.tuxpaint_near_duplicates(noisy[None], stamp[None], ["Pink houses"], ["A blue house."])
    assert dup[0]


@pytest.mark.network_data
def test_the_real_library_splits_into_training_and_development():
    from data_support import fetch_or_skip

    drawings = fetch_or_skip("Debian openclipart-svg", lambda: oc.load_drawings(oc.openclipart_root()))
    assert len(drawings) > 4000
    dev = [d for d in drawings if d.dev]
    assert 0.05 < len(dev) / len(drawings) < 0.15
    train_concepts = {d.concept for d in drawings if not d.dev}
    assert not train_concepts & {d.concept for d in dev}
    assert not any(d.id.startswith(f + "/") for d in drawings for f in oc.SKIP_FOLDERS)
    titles = {d.title.lower() for d in drawings}
    assert "pop can" in titles and "open clip art project" not in titles
