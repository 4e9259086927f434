import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from retrieval.errors import LookalikeError
from retrieval.images import open_image


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


def test_exif_orientation_is_applied_and_metadata_dropped():
    """A phone photo stored sideways (orientation 6: rotate 90° clockwise to
    view) comes out upright; no EXIF survives in the decoded image."""
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    image = open_image(_encoded(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (10, 20)  # rotated: portrait
    top, bottom = np.asarray(image)[:5].mean(), np.asarray(image)[-5:].mean()
    assert top > 200 > 50 > bottom  # the stored left half is now on top
    assert "exif" not in image.info and not image.getexif()


def test_sixteen_bit_images_are_scaled_not_clipped():
    grey = Image.fromarray(np.array([[0, 32768, 65535, 4096]], dtype=np.uint16))
    image = open_image(_encoded(grey, "PNG"))
    assert image.mode == "RGB" and list(np.asarray(image)[0, :, 0]) == [0, 128, 255, 16]


def test_transparency_is_white_and_formats_decode_to_rgb():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 4, 8))
    out = np.asarray(open_image(_encoded(rgba, "PNG")))
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[0, 7]) == (255, 255, 255)
    frames = [Image.new("RGB", (6, 4), c) for c in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(open_image(gif.getvalue()))[0, 0]) == (255, 0, 0)  # the first frame
    for image, fmt in [(Image.new("CMYK", (5, 5), (0, 0, 0, 0)), "JPEG"), (Image.new("P", (5, 5), 3), "PNG"),
                       (Image.new("RGB", (5, 5), "green"), "WEBP"), (Image.new("RGB", (1, 1)), "BMP"),
                       (Image.new("LA", (5, 5)), "PNG"), (Image.new("RGB", (5, 5)), "TIFF")]:
        decoded = open_image(_encoded(image, fmt))
        assert decoded.mode == "RGB" and decoded.size == image.size, fmt


def test_decompression_bomb_is_refused_before_decoding():
    """A tiny PNG that declares 30000x30000 pixels: refused from its header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    with pytest.raises(LookalikeError, match="too large"):
        open_image(bomb)


def test_errors_carry_no_object_reprs():
    with pytest.raises(LookalikeError) as error:
        open_image(b"this is not an image", name="photo.jpg")
    assert str(error.value).startswith("photo.jpg: not a readable image") and " at 0x" not in str(error.value)
