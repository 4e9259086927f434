"""Small result images, made once per catalogue item and shared by every way
results are shown: the page's galleries show the files, /recommend sends the
same bytes as data URLs. Made from the validated decode (EXIF orientation
applied, metadata dropped), so no catalogue file's EXIF (GPS, camera serial)
ever reaches a client, and no query decodes a full-size catalogue image.

A thumbnail's file name carries the digest of its bytes (`ROW.DIGEST.jpg`),
checked each time it is served: a damaged or replaced file (say, 25 bytes of
`<script>`) is made again, never sent."""

import base64
import io
from pathlib import Path

from retrieval.data.catalogue import Catalogue
from retrieval.store.atomic import write_bytes
from retrieval.store.cache import mark_used, tag_root
from retrieval.store.fingerprint import short_sha
from retrieval.store.verify import named_problem

THUMBNAIL = 256  # longest side, pixels
SUFFIXES = (".jpg", ".png")


class Thumbnails:
    """Thumbnail files under `folder`, one sub-folder per catalogue fingerprint."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._known = {}  # (catalogue fingerprint, row) -> its file, found or made by this process
        self._marked = set()  # catalogue fingerprints seen by this process (their folder marked once: `prune`)

    def path(self, catalogue: Catalogue, row: int) -> Path:
        """The item's thumbnail file, checked against its name; made (atomically) when missing or damaged."""
        key = (catalogue.fingerprint, row)
        folder = self.folder / catalogue.fingerprint
        if catalogue.fingerprint not in self._marked and folder.is_dir():
            mark_used(folder)  # once per catalogue and process: `prune` keeps what is shown
        path = self._known.get(key) or next(iter(sorted(folder.glob(f"{row}.*"))), None)
        if path is None or path.suffix not in SUFFIXES or named_problem(path) is not None:
            if path is not None:
                path.unlink(missing_ok=True)
            data, suffix = encode(catalogue, row)
            tag_root(self.folder.parent)
            path = folder / f"{row}.{short_sha(data)}{suffix}"
            write_bytes(path, data)
        self._known[key] = path
        self._marked.add(catalogue.fingerprint)
        return path


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
