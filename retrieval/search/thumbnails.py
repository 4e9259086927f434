"""Small result images, made once per catalogue item and shared by every way
results are shown: the page's galleries show the files, /recommend sends the
same bytes as data URLs. Made from the validated decode (EXIF orientation
applied, metadata dropped), so no catalogue file's EXIF (GPS, camera serial)
ever reaches a client, and no query decodes a full-size catalogue image."""

import base64
import io
from pathlib import Path

from retrieval.data.catalogues import Catalogue
from retrieval.store.atomic import write_bytes
from retrieval.store.cache import mark_used

THUMBNAIL = 256  # longest side, pixels


class Thumbnails:
    """Thumbnail files under `folder`, one sub-folder per catalogue fingerprint."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._marked = set()  # catalogue folders marked used by this process (once each: `prune`)

    def path(self, catalogue: Catalogue, row: int) -> Path:
        """The item's thumbnail file, made on first use (atomically)."""
        stem = self.folder / catalogue.fingerprint / str(row)
        if catalogue.fingerprint not in self._marked and stem.parent.is_dir():
            mark_used(stem.parent)
            self._marked.add(catalogue.fingerprint)
        for suffix in (".jpg", ".png"):
            if stem.with_suffix(suffix).is_file():
                return stem.with_suffix(suffix)
        data, suffix = encode(catalogue, row)
        write_bytes(stem.with_suffix(suffix), data)
        return stem.with_suffix(suffix)



def data_url(path: Path) -> str:
    """A thumbnail file as a self-contained data URL (for API clients)."""
    kind = "jpeg" if Path(path).suffix == ".jpg" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def encode(catalogue: Catalogue, row: int) -> tuple:
    """(bytes, suffix): a JPEG for photos stored as JPEG or larger than a
    thumbnail, else a PNG (28x28 garments and drawings stay sharp)."""
    image = catalogue.image(row)
    photo = _is_jpeg(catalogue.image_source(row)) or max(image.size) > THUMBNAIL
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if photo else "PNG", **({"quality": 90} if photo else {}))
    return buffer.getvalue(), ".jpg" if photo else ".png"


def _is_jpeg(source) -> bool:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:3]) == b"\xff\xd8\xff"
    with open(source, "rb") as f:
        return f.read(3) == b"\xff\xd8\xff"
