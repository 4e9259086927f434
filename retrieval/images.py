"""Open user-supplied images safely: every file from outside passes here.

What comes out is what a person looking at the file sees, as 8-bit RGB:
EXIF orientation applied (phones store photos sideways and say so), high bit
depths scaled (not clipped: a 16-bit PNG would turn almost white),
transparency over white (a product shot's empty background), the first frame
of an animation (where PIL opens it), and no metadata (thumbnails made from it can't leak EXIF).
"""

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import LookalikeError

MAX_PIXELS = 64_000_000  # 8000x8000: above this a decode could exhaust memory
MAX_BYTES = 50_000_000
# full scale of each high-bit-depth mode: values are scaled by the format's
# depth, not by the image's own maximum, so a dark 16-bit image stays dark
FULL_SCALE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}
_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def open_image(source, name=None) -> Image.Image:
    """Return a fully decoded RGB image from a path, bytes or PIL image.

    Raises LookalikeError for missing, empty, oversized, truncated or non-image
    input, naming the file, instead of a PIL traceback.
    """
    if isinstance(source, Image.Image):
        return _normalised(_checked(source, name or "image"))
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), name or "image bytes"
    else:
        path = Path(source)
        name = name or str(path)
        if not path.is_file():
            raise LookalikeError(f"{name}: no such file")
        if path.stat().st_size > MAX_BYTES:
            raise LookalikeError(f"{name}: file is larger than {MAX_BYTES // 1_000_000} MB")
        data = path.read_bytes()
    if not data:
        raise LookalikeError(f"{name}: file is empty")
    if len(data) > MAX_BYTES:
        raise LookalikeError(f"{name}: file is larger than {MAX_BYTES // 1_000_000} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _checked(image, name)  # from the header: nothing decoded yet
            image.load()  # forces a full decode: truncated files fail here
        return _normalised(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise LookalikeError(f"{name}: image is too large ({_clean(e)})") from e
    except UnidentifiedImageError as e:
        raise LookalikeError(f"{name}: not a readable image (not an image format it knows)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise LookalikeError(f"{name}: not a readable image ({_clean(e)})") from e


def _checked(image: Image.Image, name: str) -> Image.Image:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise LookalikeError(f"{name}: image is too large ({w}x{h} pixels)")
    if w < 1 or h < 1:
        raise LookalikeError(f"{name}: image has no pixels")
    return image


def _normalised(image: Image.Image) -> Image.Image:
    """Upright, 8-bit RGB, transparency over white, no metadata."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: show the pixels as stored
        upright = image
    if upright.mode in FULL_SCALE:
        pixels = np.asarray(upright, dtype=np.float64) * (255.0 / FULL_SCALE[upright.mode])
        upright = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "L")
    if upright.mode == "P" and "transparency" in upright.info or upright.mode in ("PA", "LA", "La", "RGBa"):
        upright = upright.convert("RGBA")
    if upright.mode == "RGBA":
        white = Image.new("RGBA", upright.size, (255, 255, 255, 255))
        upright = Image.alpha_composite(white, upright)
    rgb = upright.convert("RGB")
    rgb.info = {}
    return rgb


def _clean(error: Exception) -> str:
    """PIL's message without Python object reprs (they show memory addresses)."""
    return _REPR.sub("", str(error)).strip() or type(error).__name__
