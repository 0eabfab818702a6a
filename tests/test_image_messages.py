"""What lionfer.data.images says of files it cannot read (a TIFF of samples Pillow cannot decode,
an SVG, an image over PIL's pixel limit), what a converted image keeps of its file's info, and the
image formats a folder scan lists (lionfer.data.checks.IMAGE_EXTENSIONS)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, features

from lionfer.data.checks import list_images
from lionfer.data.images import ImageError, check_image_file, open_image, to_rgb
from lionfer.inference.annotate_folder import save_annotated
from lionfer.inference.sources import collect_sources


def gradient(h: int = 24, w: int = 32) -> np.ndarray:
    """(h, w, 3) float in [0, 1]."""
    return np.linspace(0.0, 1.0, h * w * 3).reshape(h, w, 3)


@pytest.mark.parametrize(
    ("array", "samples"),
    [
        (gradient().astype(np.float32), "3-channel 32-bit floating point"),
        (gradient()[:, :, 0].astype(np.float64), "1-channel 64-bit floating point"),
    ],
)
def test_a_float_tiff_pillow_cannot_decode_says_so_and_how_to_convert_it(tmp_path, array, samples):
    path = tmp_path / "depth.tif"
    assert cv2.imwrite(str(path), array)  # as OpenCV users save float arrays
    for read in (open_image, check_image_file):
        with pytest.raises(ImageError) as info:
            read(path)
        message = str(info.value)
        assert f"a TIFF whose samples Pillow cannot decode ({samples})" in message
        assert "convert it to 8- or 16-bit" in message and "magick depth.tif" in message
        assert "re-copy" not in message and "not a known image format" not in message


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>\n'
SVG_WITH_PROLOGUE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    "<!-- Created with Inkscape (http://www.inkscape.org/) -->\n"
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
    '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n' + SVG
)


@pytest.mark.parametrize("text", [SVG, SVG_WITH_PROLOGUE])
@pytest.mark.parametrize("name", ["logo.svg", "logo.png"])
def test_an_svg_is_named_a_vector_image_to_export_as_png(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ImageError) as info:
        open_image(path)
    message = str(info.value)
    assert "an SVG vector image, which lionfer does not read; export it as PNG" in message
    assert "HTML error page" not in message and "re-copy" not in message


def test_an_html_page_with_an_inline_svg_is_still_an_html_page(tmp_path):
    path = tmp_path / "face.jpg"
    path.write_text(f"<!DOCTYPE html><html><body>{SVG}404 Not Found</body></html>")
    with pytest.raises(ImageError, match="holds text, not an image.*HTML.*re-copy"):
        open_image(path)


def test_the_decompression_bomb_message_has_one_full_stop(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (20, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 px: over twice it, PIL refuses
    with pytest.raises(ImageError, match="too large to decode safely") as info:
        open_image(path)
    message = str(info.value)
    assert ".." not in message and "DOS attack. If you trust the file" in message


def icc(space: str) -> bytes:
    """An ICC profile's bytes, its colour space as given ("RGB ", "GRAY")."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile[:16] + space.encode() + profile[20:]


def test_a_1_bit_group4_tiff_becomes_rgb_without_its_fax_compression(tmp_path):
    path = tmp_path / "scan.tif"
    Image.fromarray(np.eye(32, dtype=bool)).save(path, compression="group4", dpi=(300, 300))
    image = open_image(path)
    assert image.mode == "RGB" and "compression" not in image.info
    assert image.info["dpi"] == pytest.approx((300, 300))
    copy = save_annotated(image, tmp_path / "annotated.tif")  # as predict --annotate saves it
    assert copy == tmp_path / "annotated.tif"  # a TIFF, not annotated.tif.png
    assert Image.open(copy).mode == "RGB"


def test_a_converted_image_keeps_an_icc_profile_only_where_it_describes_rgb():
    gray = Image.new("L", (4, 4))
    gray.info = {"icc_profile": icc("GRAY"), "dpi": (72, 72), "compression": "group4"}
    assert to_rgb(gray).info == {"dpi": (72, 72)}
    rgba = Image.new("RGBA", (4, 4))
    rgba.info = {"icc_profile": icc("RGB "), "transparency": 0}
    assert to_rgb(rgba).info == {"icc_profile": icc("RGB ")}


JPEG_2000 = pytest.mark.skipif(
    not features.check_codec("jpg_2000"), reason="this Pillow has no JPEG 2000 decoder"
)


@pytest.mark.parametrize(
    "suffix",
    [".ico", ".ppm", ".pgm", ".pbm", ".pnm", pytest.param(".jp2", marks=JPEG_2000)]
    + [pytest.param(".j2k", marks=JPEG_2000)],
)
def test_a_folder_scan_lists_every_format_read_when_named(tmp_path, suffix):
    path = tmp_path / f"face{suffix}"
    rgb = Image.fromarray((gradient(32, 32) * 255).astype(np.uint8))  # square: an icon's size
    rgb.convert("1" if suffix == ".pbm" else "L" if suffix == ".pgm" else "RGB").save(path)
    assert open_image(path).size == (32, 32)  # read when named directly
    sources, ignored, _ = collect_sources([str(tmp_path)])  # predict's folder scan
    assert [s.path for s in sources] == [path] and not ignored
    assert list_images(tmp_path) == ([path], 0)  # training folders' scan
