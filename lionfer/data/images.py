"""Opening image files robustly: every mode becomes 8-bit RGB, EXIF rotation is applied, and a file
that cannot be used (missing, empty, truncated, corrupt, not an image, too small) raises ImageError
naming the file and the fix. Truncated files are errors: PIL.ImageFile.LOAD_TRUNCATED_IMAGES stays
False, so partial data is never silently accepted. HEIC/HEIF photos (phones) are read where the
optional pillow-heif is installed; it is registered with PIL on import. open_photo reads a JPEG
too large for PIL's decompression-bomb limit at reduced scale, for prediction. PIL's warnings
while a file is decoded name the file (named_warnings)."""

from __future__ import annotations

import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError, features

from lionfer.data.file_kinds import FIX, container, describe, head_text, not_an_image
from lionfer.errors import InputError
from lionfer.warning_filters import filter_action

# Formats a Pillow may lack a decoder for: what to install, or to do, to read them.
_HEIF_FIX = "pip install pillow-heif (lionfer uses it when installed), or convert it to JPEG"
PLUGINS = {
    ".heic": _HEIF_FIX,
    ".heif": _HEIF_FIX,
    ".avif": "upgrade Pillow to a build with AVIF (11.3 or later), or convert it to JPEG",
}
# Cameras' RAW photos, which lionfer does not decode (PIL would read some as the small TIFF
# preview they embed): named as such wherever they are met.
RAW_SUFFIXES = frozenset(
    {".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".rw2"}
    | {".raf", ".pef", ".srw", ".raw", ".rwl", ".3fr", ".erf", ".kdc", ".mrw", ".x3f", ".iiq"}
)


def raw_note(count: int) -> str:
    """The words ", N of them camera RAW photos ...: export them" for notes of files left out
    where N of them are RAW photos; "" where none is."""
    if not count:
        return ""
    photos, them = ("a camera RAW photo", "it") if count == 1 else ("camera RAW photos", "them")
    return (
        f", {count} of them {photos} (.cr2, .nef, .arw, .dng, ...), which lionfer does not "
        f"read: export {them} as JPEG or PNG"
    )


_RAW_FIX = (
    "a camera RAW photo, which lionfer does not decode; export it as JPEG or PNG (the camera's "
    "software, darktable or rawpy do)"
)


def _register_plugins() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with PIL where it is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF = _register_plugins()  # HEIC/HEIF files can be read here


def _has_decoder(suffix: str) -> bool:
    """Whether this Pillow decodes the format of suffix, a key of PLUGINS. Asked only of a file
    PIL could not open, so that start-up does not load the AVIF codec to answer it."""
    return HEIF if suffix in (".heic", ".heif") else features.check("avif")


class ImageError(InputError):
    """An image file that is missing, truncated, corrupt or unusable."""


class ImageTooSmallError(ImageError):
    """An image that decodes fine but is smaller than the caller's minimum side."""


def open_image(path: str | Path, min_size: int = 1) -> Image.Image:
    """Open an image file as 8-bit RGB, honouring EXIF orientation.

    min_size: the smallest allowed side in pixels (after rotation); smaller raises
    ImageTooSmallError (a subclass of ImageError).
    """
    path = Path(path)
    with _decoding(path):
        with Image.open(path) as image:
            image.load()
            # upright returns a new image (a copy when there is no rotation), so the result
            # survives the `with` closing the file's image core.
            rgb = to_rgb(upright(image))
    return _large_enough(rgb, path, min_size)


def _large_enough(rgb: Image.Image, path: Path, min_size: int) -> Image.Image:
    if min(rgb.size) < min_size:
        width, height = rgb.size
        raise ImageTooSmallError(
            f"image {path} is too small ({width}×{height}); minimum is {min_size} px: use a "
            "larger copy of it or remove it from the dataset"
        )
    return rgb


JPEG_SCALES = (1, 2, 4, 8)  # the reductions libjpeg decodes at (PIL's Image.draft)


def open_photo(
    path: str | Path, max_pixels: int | None = None, min_size: int = 1
) -> tuple[Image.Image, int]:
    """open_image for photos of any size: a JPEG of more than max_pixels (default PIL's
    decompression-bomb limit, Image.MAX_IMAGE_PIXELS, 89 MP: above it PIL warns, and from twice it
    refuses) is decoded by libjpeg at 1/2, 1/4 or 1/8 scale, the largest that fits, so a 108 or
    200 MP phone photo is read in the memory of a smaller one. Returns (RGB image, scale), scale
    being the file's pixels per pixel of the image (1 unless reduced). Raises ImageError like
    open_image; other formats over the limit stay PIL's warning or error."""
    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if not (limit and _is_jpeg(path)):
        return open_image(path, min_size), 1
    # Not Image.open, which judges the size the file declares: the size decoded is what takes
    # memory, and draft bounds it. The file is opened once, so that its warnings come once in
    # every thread (named_warnings folds a second showing only in the main thread).
    with _decoding(path), JpegImagePlugin.JpegImageFile(path) as image:
        width, height = image.size
        fits = [s for s in JPEG_SCALES if -(-width // s) * -(-height // s) <= limit]
        if not fits:
            raise Image.DecompressionBombError(
                f"{width}×{height} px is more than {limit} pixels even at 1/8 scale"
            )
        scale = 1
        if fits[0] > 1:
            target = (max(1, width // fits[0]), max(1, height // fits[0]))
            _, (_, _, reduced_width, _) = image.draft(image.mode, target)
            scale = round(width / reduced_width)  # draft gives the box width / scale wide
        image.load()
        rgb = to_rgb(upright(image))
    return _large_enough(rgb, path, min_size), scale


def _is_jpeg(path: Path) -> bool:
    """Whether the file starts with a JPEG's start-of-image marker (False if unreadable, and for
    a named pipe, which is not opened: special_file)."""
    if special_file(path):
        return False
    try:
        with path.open("rb") as f:
            return f.read(3) == b"\xff\xd8\xff"
    except OSError:
        return False


def check_image_file(path: str | Path) -> tuple[int, int]:
    """Decode an image file once to prove it is usable; returns its stored (width, height).

    JPEGs are decoded at reduced scale (libjpeg's DCT scaling still reads every byte, so a
    truncated or corrupt file fails as it would in training) to keep a check of a large dataset
    fast. The decoded image goes through what open_image does with it (upright, to_rgb), so that
    whatever open_image refuses, the check refuses first. Raises ImageError like open_image.
    """
    path = Path(path)
    with _decoding(path):
        with Image.open(path) as image:
            size = image.size
            image.draft("RGB", (32, 32))  # a no-op for formats other than JPEG
            image.load()
            to_rgb(upright(image))
    return size


ORIENTATION = 0x0112  # the EXIF orientation tag
# The turn that makes an image stored with each EXIF orientation upright, as
# ImageOps.exif_transpose turns it
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Where PIL finds an orientation besides the EXIF tag: dropped from a turned image
_ORIENTATION_INFO = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def upright(image: Image.Image) -> Image.Image:
    """A new image: `image` (decoded) turned as its EXIF orientation tag says, without its EXIF
    and XMP where turned, so that nothing turns it again; a copy where there is nothing to turn.
    Unlike ImageOps.exif_transpose it never writes the EXIF back, which fails on a tag of the wrong
    type that viewers ignore, refusing a photo whose pixels are fine. EXIF that cannot be read
    is a warning (named_warnings adds the file), and the image is used as stored."""
    try:
        orientation = image.getexif().get(ORIENTATION, 1)
    except Exception as error:  # PIL's zoo of parse errors
        warnings.warn(
            f"EXIF metadata unreadable ({type(error).__name__}: {error}); the image is used as "
            "stored, not turned by its orientation tag",
            stacklevel=2,
        )
        orientation = 1
    turn = _TURNS.get(orientation) if isinstance(orientation, int) else None
    if turn is None:
        return image.copy()
    turned = image.transpose(turn)
    for key in _ORIENTATION_INFO:
        turned.info.pop(key, None)
    return turned


def path_text(path: str | Path) -> str:
    """A path as text any UTF-8 file can hold: the bytes of a name that is not UTF-8 (a Latin-1
    name from an old zip, CD or Windows share, which Python holds with surrogate escapes) as
    \\xNN, e.g. caf\\xe9.jpg; a UTF-8 name as it is."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_reading = threading.local()  # .path: the file this thread is decoding, for named_warnings
_naming = False  # named_warnings is catching warnings


@contextmanager
def named_warnings(path: str | Path | None = None, shown: bool = True) -> Iterator[None]:
    """Python warnings raised while `path` is decoded (PIL's "Corrupt EXIF data", its
    decompression-bomb warning) are shown after, each starting with the file's path: in a folder
    of thousands, a warning that names no file is of little use. Without a path: the warnings of
    the files decoded meanwhile by threads this one waits on (the image check's pool), each named.
    Each is shown once however often it was raised meanwhile (a file opened twice); none with
    shown=False, for a look at a file whose reader warns after (is_animated_image). Catching
    warnings changes the process's state, so only the main thread catches, and only once (the
    outermost call); elsewhere warnings pass as they are, with the file named where a catch of the
    main thread's is under way. A warning that the filters in force make an error (python -W
    error) is raised where it is raised, named or not, as Python raises it: the file's reader
    fails (an ImageError), in the image check's pool as in the loader."""
    global _naming
    before = getattr(_reading, "path", None)
    _reading.path = path if path is not None else before
    catch = not _naming and threading.current_thread() is threading.main_thread()
    if not catch:
        try:
            yield
        finally:
            _reading.path = before
        return
    caught = {}  # (file, text, category, place) -> None, in the order raised
    filters = tuple(warnings.filters)  # those in force: a warning they make an error raises

    def keep(message, category, filename, lineno, file=None, line=None) -> None:
        named = getattr(_reading, "path", None)
        text = f"{path_text(named)}: {message}" if named is not None else str(message)
        module = filename[:-3] if filename.lower().endswith(".py") else filename  # warn_explicit's
        if filter_action(filters, text, category, module, lineno) == "error":
            raise message if isinstance(message, Warning) else category(message)  # at PIL's place
        caught[(named, str(message), category, filename, lineno)] = None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # every file's warning, not the first of its place
            warnings.showwarning = keep
            _naming = True
            yield
    finally:
        _naming, _reading.path = False, before
        for named, text, category, filename, lineno in caught if shown else ():
            where = f"{path_text(named)}: " if named is not None else ""
            warnings.warn_explicit(f"{where}{text}", category, filename, lineno)  # at PIL's place


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Turn whatever PIL raises on a bad file into an ImageError naming it and the fix; its
    warnings name it too (named_warnings)."""
    _check_file(path)
    try:
        with named_warnings(path):
            yield
    except ImageError:  # a _decoding's inside this one
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"image {path} is too large to decode safely: {str(error).rstrip('.')}. If you "
            "trust the file, downscale it (or, in Python, raise PIL.Image.MAX_IMAGE_PIXELS); "
            "otherwise remove it"
        ) from error
    except UnidentifiedImageError as error:
        kind = container(path)
        suffix = kind if kind in PLUGINS else path.suffix.lower()
        text = None if kind else head_text(path)
        if suffix in PLUGINS and not _has_decoder(suffix) and text is None:
            named = f" (a {suffix[1:].upper()} photo, whatever its extension)" * (
                suffix != path.suffix.lower()
            )
            raise ImageError(
                f"cannot read image {path}{named}: this Pillow has no {suffix[1:].upper()} "
                f"decoder; {PLUGINS[suffix]}"
            ) from error
        raise ImageError(f"cannot read image {path}: {not_an_image(path, text, kind)}") from error
    except Warning as error:  # the pixels may be fine: nothing to re-copy
        raise ImageError(
            f"cannot read image {path}: {type(error).__name__} ({str(error).strip()}), a warning "
            "that the warnings filters in force make an error (python -W error); remove the file, "
            "or let that warning pass (a filter that ignores it, by its category or by its "
            "message from the file's path)"
        ) from error
    except Exception as error:
        # PIL's decoders raise a zoo of types on bad data (OSError, SyntaxError, ValueError,
        # EOFError, struct.error, IndexError, ...): all mean "this file is unusable".
        raise ImageError(f"cannot read image {path}: {describe(error)}; {FIX}") from error


def broken_link(path: str | Path) -> str:
    """What is wrong with a symbolic link whose target is gone ("" for any other path)."""
    path = Path(path)
    if not path.is_symlink() or path.exists():
        return ""
    chain, link = [], path  # a link to a link ...: followed as the system does, 40 at most
    while link.is_symlink() and link not in chain and len(chain) < 40:
        chain.append(link)
        link = Path(os.path.normpath(link.parent / os.readlink(link)))
    if link.is_symlink():
        loop = " -> ".join(os.readlink(p) for p in chain)
        return f"{path} is a symbolic link in a loop ({path.name} -> {loop}), to no file"
    targets = " -> ".join(os.readlink(p) for p in chain)
    return f"{path} is a symbolic link to {targets}, which does not exist"


def special_file(path: str | Path) -> str:
    """What a path that exists but is neither a regular file nor a folder is (a named pipe, a
    socket, a device), directly or through a symbolic link; "" for any other path. Opening a
    named pipe to read it waits for a writer, for ever: such a path is never opened."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a broken link, a name the system refuses
        return ""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return ""
    kind = (
        "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
    )
    through = " through a symbolic link" if Path(path).is_symlink() else ""
    return f"{path} is {kind}{through}, not a regular file"


def _check_file(path: Path) -> None:
    """Raise ImageError for a path that is not a non-empty regular file."""
    if broken := broken_link(path):
        raise ImageError(f"{broken}; fix the link or remove it")
    if special := special_file(path):
        raise ImageError(f"{special}: give image files")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image file (check the label list)")
    if not path.is_file():
        raise ImageError(
            f"image file not found: {path} (check the dataset root and the label list)"
        )
    if path.stat().st_size == 0:
        raise ImageError(f"image file {path} is empty (0 bytes); {FIX}")
    if path.suffix.lower() in RAW_SUFFIXES:
        raise ImageError(f"cannot read image {path}: {_RAW_FIX}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F) to 8-bit RGB.

    Transparency, an alpha channel's or a colour key's (a PNG's tRNS chunk), is composited on
    white; 16-bit images are scaled to 8 bits (value / 257); a float image (F) whose values all
    lie in [0, 1], as float images are kept, is scaled by 255. A converted image keeps only the
    info that fits any RGB image (_rgb_info), not the encoder settings of its file's mode.
    """
    if image.mode == "RGB" and not _keyed(image):
        return image
    rgb = _converted(image)
    rgb.info = _rgb_info(image.info)
    return rgb


def _converted(image: Image.Image) -> Image.Image:
    """to_rgb's pixels: image, of any mode but plain RGB, as 8-bit RGB (its info is to_rgb's)."""
    if image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        key = image.info.get("transparency")
        if isinstance(key, int):  # the grey level of transparent pixels: white
            array = np.where(array == key, 65535.0, array)
        return _gray_to_rgb(array * (255.0 / 65535.0))
    if image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        # Mode I/F carries no bit depth: values above 255 can only be 16-bit data, and float
        # values up to 1 are [0, 1] data (read as 0..255 they were a black image).
        high = array.max() if array.size else 0.0
        if image.mode == "F" and high <= 1.0:
            return _gray_to_rgb(array * 255.0)
        return _gray_to_rgb(array * (255.0 / 65535.0) if high > 255 else array)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or _keyed(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


# What an image's info may keep when it becomes RGB: an ICC profile only where it describes RGB
# (a grey or CMYK profile does not fit the converted pixels). Encoder settings (a 1-bit TIFF's
# "compression", group4, which RGB cannot be written with; a palette's "transparency") are dropped.
_RGB_INFO = ("dpi", "exif", "icc_profile")


def _rgb_info(info: dict) -> dict:
    """The entries of an image's info that still fit it converted to RGB."""
    kept = {key: info[key] for key in _RGB_INFO if key in info}
    icc = kept.get("icc_profile")
    if icc is not None and not (isinstance(icc, bytes) and icc[16:20] == b"RGB "):
        del kept["icc_profile"]  # the colour space of a profile, bytes 16-20 of its header
    return kept


def _keyed(image: Image.Image) -> bool:
    """Whether the image marks its transparent pixels by a colour key, as a PNG's tRNS chunk
    does: a palette index (P), a grey level (L, 1) or a colour (RGB)."""
    key = image.info.get("transparency")
    if image.mode == "P":
        return key is not None
    if image.mode == "RGB":
        return isinstance(key, tuple)
    return image.mode in ("L", "1") and isinstance(key, int)


def _gray_to_rgb(array: np.ndarray) -> Image.Image:
    gray = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
