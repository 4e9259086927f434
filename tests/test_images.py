import importlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from retrieval.data import images
from retrieval.data.images import open_image
from retrieval.errors import LookalikeError


def test_bad_files_give_clear_errors(tmp_path):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    assert open_image(tmp_path / "ok.jpg").size == (64, 64)
    for name, match in [("truncated.jpg", "not a readable image"), ("text.jpg", "not a readable image"),
                        ("empty.png", "empty"), ("missing.png", "no such file")]:
        with pytest.raises(LookalikeError, match=match):
            open_image(tmp_path / name)


def test_enormous_image_is_refused(tmp_path):
    Image.new("L", (9000, 9000)).save(tmp_path / "huge.png")
    with pytest.raises(LookalikeError, match="too large"):
        open_image(tmp_path / "huge.png")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png(width: int, height: int, depth: int, colour_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand: for what PIL can't write (16-bit colour) and
    for headers that lie about the size (decompression bombs)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    pixels = zlib.compress(rows or b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _sideways_photo(exif: bytes) -> bytes:
    """A 20x10 JPEG stored with its left half white."""
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255
    return _encoded(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)


def test_exif_orientation_is_applied():
    """Orientation 6 (rotate 90° clockwise to view) comes out as a viewer shows it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    image = open_image(_sideways_photo(exif.tobytes()))
    assert image.size == (10, 20)  # rotated: portrait
    top, bottom = np.asarray(image)[:5].mean(), np.asarray(image)[-5:].mean()
    assert top > 200 > 50 > bottom  # the stored left half is now on top


def test_broken_exif_opens_unrotated():
    """An EXIF block PIL reads but can't rewrite (ImageWidth holding text:
    exif_transpose raises struct.error) leaves the photo as stored."""
    entries = [(0x0100, 2, 6, 38), (0x0112, 3, 1, 6 << 16)]  # tag, type, count, value/offset
    ifd = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHII", *e) for e in entries)
    tiff = b"MM\0*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0) + b"Maker\0"
    photo = _sideways_photo(b"Exif\0\0" + tiff)
    assert Image.open(io.BytesIO(photo)).getexif()[0x0112] == 6  # read, but not rewritable
    image = open_image(photo)
    assert image.mode == "RGB" and image.size == (20, 10)


def test_metadata_is_dropped():
    """No EXIF (a catalogue photo's GPS position, say) reaches thumbnails."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x0112] = 1
    image = open_image(_encoded(Image.new("RGB", (8, 8)), "JPEG", exif=exif.tobytes(), comment=b"x"))
    assert image.info == {} and not image.getexif()


def test_sixteen_bit_png_is_scaled_not_clipped():
    grey = np.array([[0, 32768, 65535, 4096]], dtype=np.uint16)
    image = open_image(_encoded(Image.fromarray(grey), "PNG"))
    assert image.mode == "RGB" and list(np.asarray(image)[0, :, 0]) == [0, 128, 255, 16]


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", [0, 4096, 32768], [0, 16, 128]),
    ("I;16B", [0, 4096, 32768], [0, 16, 128]),
    ("I;16L", [0, 4096, 32768], [0, 16, 128]),
    ("I", [0, 4096, 70000], [0, 16, 255]),
    ("F", [0.0, 0.0625, 0.5], [0, 16, 128]),
])
def test_high_bit_depths_scale_by_format_not_by_image_max(mode, values, expected):
    """No pixel reaches full scale: scaled by the image's own max, these would turn bright."""
    dtype = {"I;16B": ">u2", "I": np.int32, "F": np.float32}.get(mode, "<u2")
    image = Image.frombytes(mode, (3, 1), np.array(values, dtype=dtype).tobytes())
    assert list(np.asarray(open_image(image))[0, :, 1]) == expected


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (6, 4)])
def test_sixteen_bit_colour_png_is_reduced_by_pil(colour_type, channels):
    """PIL can't write 16-bit RGB(A) PNGs but opens them as 8-bit RGB(A),
    high byte kept: images.py relies on that, this checks it."""
    values = np.array([[[0, 32768, 65535, 65535], [4096, 65535, 0, 65535]]], ">u2")[..., :channels]
    rows = b"".join(b"\0" + row.tobytes() for row in values)
    image = open_image(_png(2, 1, 16, colour_type, rows))
    assert np.asarray(image).tolist() == [[[0, 128, 255], [16, 255, 0]]]


def _half_transparent(mode: str) -> tuple[bytes, tuple]:
    """A PNG whose left half is opaque blue (black in grey modes), right half transparent."""
    if mode == "RGBA":
        image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
        image.paste((0, 0, 255, 255), (0, 0, 4, 8))
        return _encoded(image, "PNG"), (0, 0, 255)
    if mode == "LA":
        image = Image.new("LA", (8, 8), (128, 0))
        image.paste((0, 255), (0, 0, 4, 8))
        return _encoded(image, "PNG"), (0, 0, 0)
    if mode == "P":
        image = Image.new("P", (8, 8), 0)
        image.putpalette([0, 0, 0, 0, 0, 255])
        image.paste(1, (0, 0, 4, 8))
        return _encoded(image, "PNG", transparency=0), (0, 0, 255)
    image = Image.new("RGB", (8, 8), (0, 0, 0))  # RGB keyed by a tRNS colour
    image.paste((0, 0, 255), (0, 0, 4, 8))
    return _encoded(image, "PNG", transparency=(0, 0, 0)), (0, 0, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "RGB"])
def test_transparency_is_composited_on_white(mode):
    data, opaque = _half_transparent(mode)
    out = np.asarray(open_image(data))
    assert tuple(out[0, 0]) == opaque and tuple(out[0, 7]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_its_first_frame(fmt):
    frames = [Image.new("RGB", (6, 4), colour) for colour in ("red", "blue")]
    data = _encoded(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert tuple(np.asarray(open_image(data))[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("image, fmt", [
    (Image.new("CMYK", (5, 3), (0, 255, 255, 0)), "JPEG"),
    (Image.new("P", (5, 3), 3), "PNG"),
    (Image.new("RGB", (5, 3), "red"), "WEBP"),
    (Image.new("RGB", (5, 3), "red"), "BMP"),
    (Image.new("RGB", (5, 3), "red"), "TIFF"),
    (Image.new("1", (5, 3), 1), "PNG"),
    (Image.new("RGB", (1, 1), "red"), "PNG"),
], ids=["cmyk-jpeg", "palette-png", "webp", "bmp", "tiff", "bilevel-png", "1x1-png"])
def test_formats_decode_to_rgb(image, fmt):
    decoded = open_image(_encoded(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == image.size
    expected = np.asarray(image.convert("RGB"))[0, 0]
    assert np.abs(np.asarray(decoded)[0, 0].astype(int) - expected).max() <= 2  # JPEG/WebP are lossy


@pytest.mark.parametrize("width, height", [(9000, 9000), (30000, 30000)])
def test_decompression_bomb_is_refused_from_its_header(monkeypatch, width, height):
    """A few bytes declaring a huge image: refused before any decode, by
    images.py's own limit (9000x9000 is under PIL's), even with PIL's off."""
    def decode(*args):
        raise AssertionError("a decompression bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(LookalikeError, match=f"too large \\({width}x{height} pixels\\)"):
        open_image(_png(width, height, 8, 0))


def test_bomb_under_pils_limit_is_refused_without_a_warning():
    """10000x10000 is where PIL warns rather than raises: no warning escapes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LookalikeError, match="too large"):
            open_image(_png(10000, 10000, 8, 0))
    assert not caught, [str(w.message) for w in caught]


def test_importing_leaves_pils_limit_alone(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12345)
    importlib.reload(images)
    assert Image.MAX_IMAGE_PIXELS == 12345


def test_errors_are_one_line_without_object_reprs(monkeypatch):
    with pytest.raises(LookalikeError) as error:
        open_image(b"this is not an image", name="photo.jpg")
    assert str(error.value) == "photo.jpg: not a readable image (cannot identify the image format)"

    def decode(*args):
        raise OSError("broken data stream\nwhen reading <_io.BytesIO object at 0x7f3a2c1d0e50>")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(LookalikeError) as error:
        open_image(_encoded(Image.new("RGB", (4, 4)), "PNG"), name="photo.png")
    assert str(error.value) == "photo.png: not a readable image (broken data stream when reading)"
