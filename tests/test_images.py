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
