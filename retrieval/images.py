"""Open user-supplied images safely: every file from outside passes here."""

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import LookalikeError

MAX_PIXELS = 64_000_000  # 8000x8000: above this a decode could exhaust memory
MAX_BYTES = 50_000_000

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def open_image(source, name=None) -> Image.Image:
    """Return a fully decoded RGB image from a path, bytes or PIL image.

    Raises LookalikeError for missing, empty, oversized, truncated or non-image
    input, naming the file, instead of a PIL traceback.
    """
    if isinstance(source, Image.Image):
        return _checked(source, name or "image").convert("RGB")
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
    try:
        image = Image.open(io.BytesIO(data))
        _checked(image, name)
        image.load()  # forces a full decode: truncated files fail here
        return image.convert("RGB")
    except Image.DecompressionBombError as e:
        raise LookalikeError(f"{name}: image is too large ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise LookalikeError(f"{name}: not a readable image ({e})") from e


def _checked(image: Image.Image, name: str) -> Image.Image:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise LookalikeError(f"{name}: image is too large ({w}x{h} pixels)")
    if w < 1 or h < 1:
        raise LookalikeError(f"{name}: image has no pixels")
    return image
