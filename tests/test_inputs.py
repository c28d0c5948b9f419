from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed import ImageLoadError, ImagePart, InputError, Interleaved, TextPart, coerce, coerce_many, image
from mmembed.images import ImagePolicy, load_image

from conftest import make_png


def test_str_is_text_never_a_path(tmp_path: Path) -> None:
    make_png(tmp_path / "cat.png", (1, 2, 3))
    item = coerce(str(tmp_path / "cat.png"))
    assert item.modality == "text" and item.text == str(tmp_path / "cat.png")


def test_every_input_form(tmp_path: Path) -> None:
    p = make_png(tmp_path / "a.png", (200, 10, 10))
    pil = Image.open(p)
    raw = p.read_bytes()
    assert coerce(pil).modality == "image"
    assert coerce(p).images[0].uri == str(p)
    assert coerce(raw).images[0].data == raw
    assert coerce(io.BytesIO(raw)).images[0].data == raw
    assert coerce(image(str(p))).images[0].uri == str(p)
    d = coerce({"text": "caption", "image": str(p)})
    assert [type(x) for x in d.parts] == [ImagePart, TextPart] and d.modality == "image+text"
    many = coerce({"images": [p, raw], "text": "two"})
    assert len(many.images) == 2
    inter = coerce(["before", {"type": "image", "image": str(p)}, "middle", p,
                    {"type": "image_url", "image_url": {"url": "https://example.org/x.png"}}, "after"])
    assert [x.type for x in inter.parts] == ["text", "image", "text", "image", "image", "text"]
    assert inter.texts == ["before", "middle", "after"]
    assert inter.image_uris == [str(p), str(p), "https://example.org/x.png"]
    assert coerce(inter) is inter
    assert len(coerce_many(["a", "b"])) == 2 and len(coerce_many("single")) == 1


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "whitespace"),
        ("   \n", "whitespace"),
        ([], "empty"),
        ({}, "empty"),
        ({"txt": "x"}, "unknown keys"),
        ({"images": "a.png"}, "must be a list"),
        ([["nested"]], "nested lists"),
        ({"type": "video", "url": "x"}, "unknown part"),
        (3.5, "cannot use 3.5"),
        (b"", "0 bytes"),
        ({"text": 5}, "text must be a str"),
    ],
)
def test_bad_inputs_name_the_input(value: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        coerce(value, where="query #7")
    with pytest.raises(InputError, match="query #7"):
        coerce(value, where="query #7")


def test_blank_text_next_to_an_image_is_dropped(tmp_path: Path) -> None:
    p = make_png(tmp_path / "a.png", (1, 1, 1))
    assert coerce({"image": p, "text": "  "}).modality == "image"


def test_content_hash_is_stable_and_content_based(tmp_path: Path) -> None:
    a = make_png(tmp_path / "a.png", (9, 9, 9))
    b = tmp_path / "copy.png"
    b.write_bytes(a.read_bytes())
    assert coerce({"image": a, "text": "x"}).content_hash() == coerce({"image": b, "text": "x"}).content_hash()
    assert coerce({"image": a, "text": "x"}).content_hash() != coerce({"image": a, "text": "y"}).content_hash()
    assert coerce(["ab", "c"]).content_hash() != coerce(["a", "bc"]).content_hash()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_supported_formats_load_as_rgb(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new("RGB", (10, 6), (10, 200, 30)).save(path, format=fmt)
    img = load_image(path).image
    assert img.mode == "RGB" and img.size == (10, 6)


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "t.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(path)
    assert load_image(path).image.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (20, 10), (0, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert load_image(path).image.size == (10, 20)


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    r, g, b = load_image(path).image.getpixel((0, 0))
    assert r > 200 and b < 50


def test_decompression_bomb_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path, ImagePolicy(max_pixels=1_000_000))


def test_unsupported_and_broken_files(tmp_path: Path) -> None:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n")
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(tmp_path / "doc.pdf")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="scheme is not supported"):
        load_image("file:///etc/passwd")


def test_remote_urls_are_off_by_default() -> None:
    with pytest.raises(ImageLoadError, match="allow_remote=True"):
        load_image("https://example.org/cat.png")


def test_data_uri(tmp_path: Path) -> None:
    import base64

    raw = make_png(tmp_path / "a.png", (5, 6, 7)).read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(raw).decode()
    assert load_image(uri).image.getpixel((0, 0)) == (5, 6, 7)
    with pytest.raises(ImageLoadError, match="base64"):
        load_image("data:image/png,rawdata")


def test_pil_input_hash_depends_on_pixels() -> None:
    a = Image.new("RGB", (3, 3), (1, 2, 3))
    b = Image.new("RGB", (3, 3), (1, 2, 4))
    assert load_image(a).digest != load_image(b).digest
    assert np.asarray(load_image(a).image).shape == (3, 3, 3)


def test_interleaved_model_serialises_without_pixels(tmp_path: Path) -> None:
    p = make_png(tmp_path / "a.png", (1, 1, 1))
    item = coerce({"image": p, "text": "t"})
    item.load_images()
    dumped = item.model_dump()
    assert dumped == {"parts": [{"type": "image", "uri": str(p)}, {"type": "text", "text": "t"}]}
    assert isinstance(Interleaved.model_validate(dumped), Interleaved)
