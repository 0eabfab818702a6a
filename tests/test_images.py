"""open_image: every mode to 8-bit RGB, EXIF rotation, and a named ImageError for each bad file;
check_images: every image of a set checked once before a run reads it."""

from __future__ import annotations

import io
import re
import struct
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from lionfer.data import images
from lionfer.data.base import ImageSet
from lionfer.data.image_check import MIN_IMAGE_SIDE, check_images
from lionfer.data.images import (
    HEIF,
    ImageError,
    ImageTooSmallError,
    check_image_file,
    open_image,
    to_rgb,
)
from lionfer.errors import InputError


def noise(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_rgb_jpeg_opens_with_same_size_and_content(tmp_path):
    path = tmp_path / "a.png"
    array = noise(20, 30)
    Image.fromarray(array).save(path)
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(image), array)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_file_is_an_error_naming_file_and_fix(tmp_path, fmt, suffix):
    data = encoded(Image.fromarray(noise(64, 64)), fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        open_image(path)
    assert str(path) in str(info.value) and "re-copy" in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_bytes_are_not_an_image(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8)))
    with pytest.raises(ImageError, match="not a known image format") as info:
        open_image(path)
    assert str(path) in str(info.value)


def test_png_with_corrupt_data_chunk_is_an_error(tmp_path):
    data = bytearray(encoded(Image.fromarray(noise(64, 64)), "PNG"))
    start = data.index(b"IDAT") + 20
    data[start : start + 40] = bytes(40)  # breaks the chunk's CRC and the zlib stream
    path = tmp_path / "broken.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt|truncated"):
        open_image(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        open_image(tmp_path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty \\(0 bytes\\)"):
        open_image(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "page.jpg"
    path.write_text("<html><body>403 Forbidden</body></html>\n")
    with pytest.raises(ImageError, match="holds text, not an image.*HTML"):
        open_image(path)


@pytest.mark.skipif(HEIF, reason="pillow-heif is installed: HEIC decodes")
def test_heic_without_a_decoder_names_the_plugin(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"  # an ISO-BMFF header Pillow alone cannot identify
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(ImageError, match="no HEIC decoder; pip install pillow-heif"):
        open_image(path)
    page = tmp_path / "photo.heic"  # text is text, whatever its name
    page.write_text("<html>404</html>")
    with pytest.raises(ImageError, match="holds text"):
        open_image(page)


@pytest.mark.skipif(HEIF, reason="pillow-heif is installed: HEIC decodes")
def test_a_heic_photo_named_jpg_is_named_by_its_bytes(tmp_path):
    path = tmp_path / "IMG_0001.jpg"  # a phone's HEIC photo renamed, or shared as .jpg
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(ImageError, match=r"\(a HEIC photo, whatever its extension\).*pillow-heif"):
        open_image(path)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"PK\x03\x04", "a zip archive"),
        (b"%PDF-1.7", "a PDF document"),
        (b"\x1f\x8b\x08", "a gzip archive"),
        (b"\x00\x00\x00\x18ftypisom", r"an MP4 or QuickTime video \(named .mp4 or .mov"),
        ((b"\x47" + bytes(187)) * 3, r"an MPEG transport stream video \(named .ts or .mts"),
        (bytes(50) + (b"\x47" + bytes(191)) * 3, "an MPEG transport stream video"),  # Blu-ray
    ],
)
def test_an_archive_or_document_named_png_says_what_it_is(tmp_path, head, kind):
    path = tmp_path / "face.png"
    path.write_bytes(head + b"hello world" * 10)
    with pytest.raises(ImageError, match=f"the file is {kind}.*, not an image"):
        open_image(path)


def test_the_missing_decoder_is_named_only_where_it_is_missing(tmp_path, monkeypatch):
    path = tmp_path / "broken.avif"  # binary content no decoder identifies
    path.write_bytes(b"\x00\x00\x00\x18ftypzzzz\x00\x00\x00\x00" + bytes(64))
    monkeypatch.setattr(images.features, "check", lambda feature: False)  # a Pillow without
    with pytest.raises(ImageError, match="no AVIF decoder; upgrade Pillow"):
        open_image(path)
    monkeypatch.setattr(images.features, "check", lambda feature: True)  # so the file is bad
    with pytest.raises(ImageError, match="not a known image format"):
        open_image(path)


def test_grayscale_becomes_rgb_with_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(noise()[..., 0]).save(path)
    array = np.asarray(open_image(path))
    assert array.shape == (32, 32, 3)
    np.testing.assert_array_equal(array[..., 0], noise()[..., 0])
    np.testing.assert_array_equal(array[..., 0], array[..., 2])


def test_palette_without_and_with_transparency(tmp_path):
    palette = Image.new("P", (10, 10))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (5, 0, 10, 10))  # left half index 0 (red), right half index 1 (blue)
    path = tmp_path / "p.png"
    palette.save(path)
    array = np.asarray(open_image(path))
    assert tuple(array[0, 0]) == (255, 0, 0) and tuple(array[0, 9]) == (0, 0, 255)

    path_t = tmp_path / "pt.png"
    palette.save(path_t, transparency=1)  # index 1 (blue) is transparent → white
    with Image.open(path_t) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    array = np.asarray(open_image(path_t))
    assert tuple(array[0, 0]) == (255, 0, 0) and tuple(array[0, 9]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=100)  # pure red
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    image = open_image(path)
    assert image.mode == "RGB"
    r, g, b = np.asarray(image)[8, 8].astype(int)
    assert r > 240 and g < 15 and b < 15


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :2, 3] = 255  # left half opaque, right half fully transparent
    rgba[0, 2, 3] = 128  # one half-transparent pixel
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    array = np.asarray(open_image(path)).astype(int)
    assert tuple(array[0, 0]) == (255, 0, 0)
    assert tuple(array[1, 3]) == (255, 255, 255)
    assert array[0, 2, 0] == 255 and abs(array[0, 2, 1] - 127) <= 1

    la = np.zeros((4, 4, 2), dtype=np.uint8)  # black, opaque only in the first column
    la[:, 0, 1] = 255
    path_la = tmp_path / "la.png"
    Image.fromarray(la).save(path_la)
    array = np.asarray(open_image(path_la))
    assert tuple(array[0, 0]) == (0, 0, 0) and tuple(array[0, 3]) == (255, 255, 255)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)  # 32896 = 128 * 257
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    array = np.asarray(open_image(path))
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array[0, :, 0], [0, 1, 255, 128])


def test_dark_16_bit_image_is_not_mistaken_for_8_bit():
    # All values <= 255 in a 16-bit image are nearly black, not full-range 8-bit data.
    dark = Image.fromarray(np.full((2, 2), 200, dtype=np.uint16))
    assert dark.mode.startswith("I;16")
    assert np.asarray(to_rgb(dark)).max() == 1


@pytest.mark.parametrize("orientation,red_at", [(6, "top"), (8, "bottom")])
def test_exif_orientation_is_applied(tmp_path, orientation, red_at):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)  # stored image: red left half, blue right half
    array[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    image = open_image(path)
    assert image.size == (20, 40)  # portrait after rotation
    out = np.asarray(image).astype(int)
    top, bottom = out[5, 10], out[34, 10]
    red, blue = (top, bottom) if red_at == "top" else (bottom, top)
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60


def test_tiny_images_and_min_size(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (9, 9, 9)).save(path)
    assert open_image(path).size == (1, 1)  # default min_size=1 accepts it
    with pytest.raises(ImageTooSmallError, match="\\(1×1\\); minimum is 8 px: use a larger copy"):
        open_image(path, min_size=8)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (100, 7)).save(wide)
    with pytest.raises(ImageError, match="too small \\(100×7\\); minimum is 16 px"):
        open_image(wide, min_size=16)
    assert open_image(wide, min_size=7).size == (100, 7)


def test_check_image_file_decodes_like_training_does(tmp_path):
    data = encoded(Image.fromarray(noise(64, 48)), "JPEG", quality=90)
    whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) // 2])
    assert check_image_file(whole) == (48, 64)
    with pytest.raises(ImageError, match="truncated"):
        check_image_file(cut)
    with pytest.raises(ImageError, match="not found"):
        check_image_file(tmp_path / "gone.jpg")


def file_set(tmp_path, sizes, broken=()) -> ImageSet:
    paths = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for k, size in enumerate(sizes):
        path = tmp_path / f"{k}.png"
        data = encoded(Image.fromarray(noise(size, size, k)), "PNG")
        path.write_bytes(data[: len(data) // 3] if k in broken else data)
        paths.append(str(path))
    return ImageSet(paths, np.zeros(len(paths)), ids=[f"{k}.png" for k in range(len(paths))])


def test_unreadable_images_are_an_error_listing_them_or_skipped_when_asked(tmp_path):
    images = file_set(tmp_path, [32] * 6, broken=(1, 4))
    with pytest.raises(ImageError) as info:
        check_images(images, "unlabeled", skip_bad=False)
    message = str(info.value)
    assert message.startswith("2 of 6 unlabeled images cannot be read")
    assert "1.png: cannot read image" in message and "data.skip_bad=true" in message
    result = check_images(images, "unlabeled", skip_bad=True)
    assert result.keep.tolist() == [True, False, True, True, False, True]
    assert result.notes == [
        "skipped 2 unreadable unlabeled images (data.skip_bad=true): 1.png, 4.png"
    ]
    with pytest.raises(ImageError, match="6 of 6"):  # nothing left to train on: still an error
        check_images(file_set(tmp_path / "all", [32] * 6, range(6)), "train", skip_bad=True)


def test_images_smaller_than_the_minimum_warn(tmp_path):
    result = check_images(file_set(tmp_path, [32, 1, 8, 16]), "train", skip_bad=False)
    assert result.keep.all() and result.notes == []
    assert result.warnings == [
        f"2 of 4 train images are smaller than {MIN_IMAGE_SIDE} px on a side (1.png, 2.png); "
        "they are upscaled to data.image_size and carry little detail"
    ]
    boxed = file_set(tmp_path / "boxed", [32, 32])
    boxed.boxes = np.array([[0, 0, 20, 20], [4, 4, 10, 30]])  # training sees the face box
    assert "1 of 2" in check_images(boxed, "train", skip_bad=False).warnings[0]


def test_in_memory_images_are_checked_by_shape():
    arrays = ImageSet(np.zeros((5, 8, 8, 3), np.uint8), np.zeros(5))
    result = check_images(arrays, "train", skip_bad=False)
    assert result.keep.all() and "5 of 5 train images are smaller" in result.warnings[0]
    assert (
        check_images(ImageSet(np.zeros((5, 24, 24), np.uint8), np.zeros(5)), "x", False).warnings
        == []
    )
    with pytest.raises(InputError, match="must be uint8"):
        check_images(ImageSet(np.zeros((5, 24, 24, 3)), np.zeros(5)), "test", skip_bad=False)


def exif_with_a_tag_of_the_wrong_type(orientation: int) -> bytes:
    """An EXIF block as buggy camera software writes it: ImageWidth (0x0100) as ASCII text, which
    PIL reads but cannot write back, beside the orientation tag."""
    text = b"Camera\x00"
    at = 8 + 2 + 2 * 12 + 4  # the text, after the header and the IFD of two 12-byte entries
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 2)
    tiff += struct.pack(">HHII", 0x0100, 2, len(text), at)  # ImageWidth, type 2: ASCII
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)  # Orientation, type 3: SHORT
    return b"Exif\x00\x00" + tiff + struct.pack(">I", 0) + text


def test_a_tag_of_the_wrong_type_neither_refuses_a_photo_nor_keeps_it_sideways(tmp_path):
    """Viewers show such a photo upright: it is read turned by its orientation tag, the check
    before training passes it as the reader does, and the copy read holds no orientation left
    to apply again."""
    path = tmp_path / "sideways.jpg"
    Image.fromarray(noise(20, 40)).save(path, exif=exif_with_a_tag_of_the_wrong_type(6))
    image = open_image(path)
    assert image.size == (20, 40)  # turned a quarter, as orientation 6 says
    assert image.getexif().get(0x0112, 1) == 1
    assert check_image_file(path) == (40, 20)  # the stored size
    assert images.open_photo(path)[0].size == (20, 40)


def test_exif_that_cannot_be_read_is_a_warning_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    Image.fromarray(noise(20, 40)).save(path)

    def unreadable(image):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(Image.Image, "getexif", unreadable)
    named = f"^{re.escape(str(path))}: EXIF metadata unreadable"
    with pytest.warns(UserWarning, match=named) as caught:
        assert open_image(path).size == (40, 20)  # as stored
        assert check_image_file(path) == (40, 20)
    assert len(caught) == 2


def test_a_colour_key_marks_transparent_pixels_too(tmp_path):
    """A PNG's tRNS colour key (RGB, grey, 16-bit grey) is transparency, composited on white as
    an alpha channel's is."""
    rgb = np.full((4, 4, 3), 90, dtype=np.uint8)
    rgb[:, :2] = 0  # the key colour
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png", transparency=0)
    deep = (rgb[..., 0].astype(np.uint16)) * 257
    Image.fromarray(deep).save(tmp_path / "i16.png", transparency=0)
    for name in ("rgb.png", "l.png", "i16.png"):
        array = np.asarray(open_image(tmp_path / name))
        assert (array[:, :2] == 255).all() and (array[:, 2:] == 90).all(), name


def test_pils_warnings_name_the_file(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    Image.fromarray(noise(12, 12)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 144 px: a warning, not yet an error
    with pytest.warns(Image.DecompressionBombWarning, match=f"^{re.escape(str(path))}: Image size"):
        open_image(path)
    bad_exif = b"Exif\x00\x00II*\x00" + (0x7FFFFFF0).to_bytes(4, "little") + bytes(8)
    corrupt = tmp_path / "corrupt_exif.jpg"
    Image.fromarray(noise(8, 8)).save(corrupt, exif=bad_exif)
    with pytest.warns(UserWarning, match=f"^{re.escape(str(corrupt))}: Corrupt EXIF data"):
        open_image(corrupt)


def test_the_image_check_names_the_file_of_each_warning_from_its_threads(tmp_path, monkeypatch):
    images = file_set(tmp_path, [12] * 6)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    shown = warnings.showwarning
    with pytest.warns(Image.DecompressionBombWarning) as caught:
        check_images(images, "train", skip_bad=False)
    assert sorted(str(w.message).split(":")[0] for w in caught) == sorted(images.images)
    assert warnings.showwarning is shown  # the threads left Python's warnings as they were


def test_a_warning_the_filters_make_an_error_is_refused_by_the_check_as_by_the_loader(
    tmp_path, monkeypatch
):
    """Under python -W error a file that warns (here: PIL's decompression-bomb warning, and
    corrupt EXIF) is unreadable in the check's threads as in the loader: refused or skipped
    before training, not at its first step; and no advice to download it again."""
    images = file_set(tmp_path, [12, 8, 8])  # 0.png: 144 px, over the limit below
    corrupt = tmp_path / "corrupt_exif.jpg"
    bad_exif = b"Exif\x00\x00II*\x00" + (0x7FFFFFF0).to_bytes(4, "little") + bytes(8)
    Image.fromarray(noise(8, 8)).save(corrupt, exif=bad_exif)
    images = ImageSet([*images.images, str(corrupt)], np.zeros(4), ids=[*images.ids, "exif"])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (images.images[0], corrupt):
            with pytest.raises(ImageError, match="warnings filters in force make an error"):
                open_image(path)
        with pytest.raises(ImageError, match="2 of 4 train images cannot be read") as info:
            check_images(images, "train", skip_bad=False)
        assert check_images(images, "train", skip_bad=True).keep.tolist() == [0, 1, 1, 0]
    assert "DecompressionBombWarning" in str(info.value) and "re-download" not in str(info.value)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x00\x00\x00\x18ftypisom", "an MP4 or QuickTime video"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "an AVI video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "a Matroska or WebM video"),
    ],
)
def test_a_video_named_as_an_image_is_named_without_advice_to_download_it_again(
    tmp_path, head, kind
):
    path = tmp_path / "clip.jpg"
    path.write_bytes(head + bytes(300))
    with pytest.raises(ImageError, match=f"the file is {kind}") as info:
        open_image(path)
    assert "re-download" not in str(info.value)
