"""Handcrafted image descriptors, the report's no-learning baseline: what
colour, texture and edges alone find. Each image, resized whole to 64x64,
becomes the concatenation of three L2-normalised histograms (square-rooted
first, the Hellinger kernel, so that no single bin dominates a cosine):

- colour: a joint HSV histogram, 8 hues x 4 saturations x 4 values (128 bins);
- texture: uniform local binary patterns of the grey image (8 neighbours,
  radius 1: 58 uniform codes plus one bin for the rest, 59 bins);
- edges: gradient orientations (9 unsigned bins) weighted by magnitude in
  each cell of a 4x4 grid (144 bins), a global HOG-like layout descriptor.
"""

import numpy as np
from PIL import Image

SIZE = 64
HSV_BINS = (8, 4, 4)
ORIENTATIONS, GRID = 9, 4
DIM = int(np.prod(HSV_BINS)) + 59 + ORIENTATIONS * GRID * GRID


def _uniform_lbp_table() -> np.ndarray:
    """Code (0..255) -> bin: each uniform pattern (at most two 0/1 transitions
    around the circle) its own bin, every other pattern the last one."""
    table = np.full(256, 58, dtype=np.int64)
    uniform = [code for code in range(256)
               if sum(((code >> i) & 1) != ((code >> ((i + 1) % 8)) & 1) for i in range(8)) <= 2]
    table[uniform] = np.arange(len(uniform))
    return table


LBP_TABLE = _uniform_lbp_table()


def _normalised(histogram: np.ndarray) -> np.ndarray:
    root = np.sqrt(histogram / max(histogram.sum(), 1e-12))
    return root / max(np.linalg.norm(root), 1e-12)


def colour_histogram(image: Image.Image) -> np.ndarray:
    hsv = np.asarray(image.convert("HSV"), dtype=np.int64)
    bins = [hsv[..., c] * n // 256 for c, n in enumerate(HSV_BINS)]
    joint = (bins[0] * HSV_BINS[1] + bins[1]) * HSV_BINS[2] + bins[2]
    return _normalised(np.bincount(joint.ravel(), minlength=int(np.prod(HSV_BINS))).astype(np.float64))


def texture_histogram(grey: np.ndarray) -> np.ndarray:
    centre = grey[1:-1, 1:-1]
    h, w = grey.shape
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]  # around the circle
    codes = np.zeros(centre.shape, dtype=np.int64)
    for bit, (dy, dx) in enumerate(offsets):
        codes |= (grey[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= centre).astype(np.int64) << bit
    return _normalised(np.bincount(LBP_TABLE[codes].ravel(), minlength=59).astype(np.float64))


def edge_histogram(grey: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    orientation = (np.arctan2(gy, gx) % np.pi) / np.pi * ORIENTATIONS  # unsigned, in [0, 9)
    bins = np.minimum(orientation.astype(np.int64), ORIENTATIONS - 1)
    cell = SIZE // GRID
    cells = (np.arange(SIZE)[:, None] // cell) * GRID + np.arange(SIZE)[None, :] // cell
    return _normalised(np.bincount((cells * ORIENTATIONS + bins).ravel(), weights=magnitude.ravel(),
                                   minlength=ORIENTATIONS * GRID * GRID))


def describe(image: Image.Image) -> np.ndarray:
    """One RGB image -> its DIM-d descriptor (float32)."""
    small = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    grey = np.asarray(small.convert("L"), dtype=np.float64)
    return np.concatenate([colour_histogram(small), texture_histogram(grey), edge_histogram(grey)]).astype(np.float32)


def handcrafted_features(images) -> np.ndarray:
    """RGB images -> (N, DIM) descriptors."""
    return np.stack([describe(im) for im in images])
