"""Choosing the near-duplicate threshold (issue #22): N car thumbnails and
four altered copies of each (resized to half and back, recompressed as a
JPEG of quality 25, cropped to 85% of the frame, brightness +25%) in one
flat folder; for each threshold, the pairs `duplicates` reports (through
the index's neighbours) against the truth (same source image):

    python scripts/duplicates_eval.py --cars ../shared/data/stanford-cars-thumbs --n 500 [--head RUN_DIR]
        [--backbone NAME] [--thresholds .9 .95 ...]

Prints, per threshold, the precision and recall of the reported pairs, and
per kind of alteration the share of copies joined to their original."""

import argparse
import io
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from retrieval.data.catalogues import load_catalogue
from retrieval.embedding.embedder import create_embedder
from retrieval.search.duplicates import duplicate_groups
from retrieval.search.recommender import Recommender

ALTERATIONS = {
    "resized": lambda im: im.resize((im.width // 2, im.height // 2)).resize(im.size),
    "recompressed": lambda im: _jpeg(im, 25),
    "cropped": lambda im: im.crop((round(im.width * .075), round(im.height * .075), round(im.width * .925),
                                   round(im.height * .925))),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
}
THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def make_copies(cars: str, n: int, folder: Path, seed=0) -> dict:
    """Originals and their copies as `folder/SOURCE-KIND.png`; {file stem: source}."""
    catalogue = load_catalogue(cars, classes="50-98")
    rows = np.random.default_rng(seed).choice(len(catalogue), n, replace=False)
    source = {}
    for row in rows.tolist():
        item, image = catalogue.ids[row], catalogue.image(row)
        image.save(folder / f"{item}-original.png")
        source[f"{item}-original"] = item
        for kind, alter in ALTERATIONS.items():
            alter(image).save(folder / f"{item}-{kind}.png")
            source[f"{item}-{kind}"] = item
    return source


def pairs_of(groups: list, ids: list) -> set:
    return {tuple(sorted((ids[a], ids[b]))) for g in groups for a, b in itertools.combinations(g["rows"], 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cars", required=True)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--head")
    p.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    p.add_argument("--cache-dir")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "copies"
        folder.mkdir()
        source = make_copies(args.cars, args.n, folder)
        catalogue = load_catalogue(str(folder))
        rec = Recommender(catalogue, create_embedder(args.backbone, args.head), args.cache_dir or Path(tmp) / "c",
                          index_backend="exact").build()
        ids = catalogue.ids
        truth = {tuple(sorted((a, b))) for a, b in itertools.combinations(ids, 2) if source[a] == source[b]}
        report = {"images": len(ids), "embedding": rec.embedding_name, "true_pairs": len(truth), "thresholds": []}
        for threshold in args.thresholds:
            found = pairs_of(duplicate_groups(rec, threshold), ids)
            hits = len(found & truth)
            joined = {kind: np.mean([tuple(sorted((f"{s}-original", f"{s}-{kind}"))) in found
                                     for s in set(source.values())]) for kind in ALTERATIONS}
            report["thresholds"].append({"threshold": threshold, "pairs_found": len(found),
                                         "precision": round(hits / max(len(found), 1), 4),
                                         "recall": round(hits / len(truth), 4),
                                         "copy_joined_to_original": {k: round(float(v), 3) for k, v in joined.items()}})
            print(json.dumps(report["thresholds"][-1]), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
