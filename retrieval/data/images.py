"""Open user-supplied images safely: every file from outside passes here.

What comes out is what a person looking at the file sees, as 8-bit RGB:
EXIF orientation applied (phones store photos sideways and say so), high bit
depths scaled (not clipped: a 16-bit PNG would turn almost white),
transparency over white (a product shot's empty background), the first frame
of an animation, and no metadata (thumbnails made from it can't leak EXIF).
PIL's global settings are left alone: the size limit is checked here.
"""

import io
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from retrieval.errors import LookalikeError

MAX_PIXELS = 64_000_000  # 8000x8000: above this a decode could exhaust memory
MAX_BYTES = 50_000_000
# full scale of each high-bit-depth mode: values are scaled by the format's
# depth, not by the image's own maximum, so a dark 16-bit image stays dark.
# 16-bit RGB(A) PNGs need no entry: PIL opens them as 8-bit RGB(A) already.
FULL_SCALE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}
_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")
# catch_warnings swaps process-wide state: two threads inside it at once can
# leave the wrong filters behind
_WARNING_FILTERS = threading.Lock()


def open_image(source, name=None) -> Image.Image:
    """Return a fully decoded RGB image from a path, bytes or PIL image.

    Raises LookalikeError for missing, empty, oversized, truncated or non-image
    input, naming the file, instead of a PIL traceback.
    """
    if isinstance(source, Image.Image):
        name = name or "image"
    else:
        source, name = read_image_bytes(source, name)
    try:
        image = source if isinstance(source, Image.Image) else _header(source)
        _checked(image, name)  # nothing decoded yet
        image.load()  # decodes in full: truncated files fail here, not later
        return _normalised(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise LookalikeError(f"{name}: image is too large ({_clean(e)})") from e
    except UnidentifiedImageError as e:
        raise LookalikeError(f"{name}: not a readable image (cannot identify the image format)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise LookalikeError(f"{name}: not a readable image ({_clean(e)})") from e


def read_image_bytes(source, name=None) -> tuple:
    """(bytes, name) of an image file or bytes, refusing missing, empty and
    oversized files before PIL sees them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "image bytes"
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise LookalikeError(f"{name}: no such file")
        if path.stat().st_size > MAX_BYTES:  # not read into memory at all
            raise LookalikeError(f"{name}: file is larger than {MAX_BYTES // 1_000_000} MB")
        data = path.read_bytes()
    if not data:
        raise LookalikeError(f"{name}: file is empty")
    if len(data) > MAX_BYTES:
        raise LookalikeError(f"{name}: file is larger than {MAX_BYTES // 1_000_000} MB")
    return data, name


def _header(data: bytes) -> Image.Image:
    """Image.open reads only the header. PIL's decompression-bomb warning is
    raised rather than printed: the image is refused either way."""
    with _WARNING_FILTERS, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _checked(image: Image.Image, name: str) -> Image.Image:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise LookalikeError(f"{name}: image is too large ({w}x{h} pixels)")
    if w < 1 or h < 1:
        raise LookalikeError(f"{name}: image has no pixels")
    return image


def _normalised(image: Image.Image) -> Image.Image:
    """Upright, 8-bit RGB, transparency over white, no metadata."""
    rgb = _over_white(_eight_bit(_upright(image))).convert("RGB")
    rgb.info = {}
    return rgb


def _upright(image: Image.Image) -> Image.Image:
    """Turned as EXIF says a viewer shows it; a broken EXIF block leaves the
    pixels as stored rather than refusing the photo."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # PIL raises struct.error, TypeError, ... on bad EXIF
        return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """High-bit-depth grey scaled by the format's full scale (16-bit: 65535 -> 255)."""
    full = FULL_SCALE.get(image.mode)
    if full is None:
        return image
    pixels = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0, full)
    return Image.fromarray((pixels * np.float32(255 / full) + 0.5).astype(np.uint8))


def _over_white(image: Image.Image) -> Image.Image:
    """Transparent areas as white, like a catalogue's background, not black."""
    if "transparency" in image.info or image.mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode != "RGBA":
        return image
    return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)


def _clean(error: Exception) -> str:
    """PIL's message on one line, without Python object reprs (they show memory addresses)."""
    return " ".join(_REPR.sub("", str(error)).split()) or type(error).__name__
