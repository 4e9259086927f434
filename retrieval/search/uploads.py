"""Query embeddings of uploaded images, remembered by content: the page asks
again with the same upload on every 👍/👎 and every new filter, and a backbone
pass (two networks with efficientnet_lite0_lite2) is the dear part of a query."""

import hashlib
import threading
from collections import OrderedDict

from PIL import Image

from retrieval.data.images import open_image, read_image_bytes

KEPT = 64  # uploads remembered per service: a few users' recent queries


def content_digest(image) -> tuple:
    """(a digest naming an upload by its content, the upload as open_image
    takes it): a path is read once, for both."""
    if isinstance(image, Image.Image):
        return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest(), (image,)
    data, name = read_image_bytes(image)
    return hashlib.sha256(data).hexdigest(), (data, name)


class UploadEmbeddings:
    """{side: embedding} of the latest KEPT uploads, least recently used
    forgotten first; thread-safe."""

    def __init__(self, kept: int = KEPT):
        self.kept, self._lock, self._entries = kept, threading.Lock(), OrderedDict()

    def get(self, models: tuple, image, embed):
        """The upload's embeddings under `models` (what embeds it: the served
        embeddings' fingerprints, so a head that arrives later is not missed);
        `embed(decoded image)` makes them when they are not remembered (the
        upload validated by open_image first)."""
        digest, source = content_digest(image)
        key = (models, digest)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        embeddings = embed(open_image(*source))
        with self._lock:
            self._entries[key] = embeddings
            while len(self._entries) > self.kept:
                self._entries.popitem(last=False)
        return embeddings
