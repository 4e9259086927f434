"""The original Stanford Cars layout: `cars_train/*.jpg` with
`devkit/cars_train_annos.mat` (file -> class) and `devkit/cars_meta.mat`
(class names); class numbers are the devkit's ids 1-196."""

import logging
from pathlib import Path

import numpy as np

from retrieval.data.catalogue import Catalogue, make_dataset
from retrieval.data.files import Skipped, hashed
from retrieval.errors import LookalikeError
from retrieval.store.fingerprint import digest

log = logging.getLogger(__name__)


def detect(path: Path) -> bool:
    return (path / "cars_train").is_dir() and (path / "devkit" / "cars_meta.mat").is_file()


def read(spec: str, root: Path, split, record) -> Catalogue:
    """The layout's read (catalogues.LAYOUTS); `split` is unused: the folder is one split."""
    from scipy.io import loadmat  # only this layout needs scipy

    devkit = root / "devkit"
    try:
        meta = loadmat(devkit / "cars_meta.mat")
        names = [str(np.ravel(n)[0]) for n in np.ravel(meta["class_names"])]
        annos = np.ravel(loadmat(devkit / "cars_train_annos.mat")["annotations"])
        records = [(str(np.ravel(r["fname"])[0]), int(np.ravel(r["class"])[0]) - 1) for r in annos]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise LookalikeError(f"catalogue {spec!r}: its devkit .mat files can't be read ({type(e).__name__})") from e
    present = [(root / "cars_train" / fname, label) for fname, label in records
               if (root / "cars_train" / fname).is_file()]
    if len(present) < len(records):
        log.warning("catalogue %s: %d annotated files are missing from cars_train/", spec, len(records) - len(present))
    skipped = Skipped()
    images, keys = hashed([path for path, _ in present], skipped, record)
    skipped.warn(spec)
    label_of = dict(present)
    labels, ids = [label_of[path] for path in images], [path.stem for path in images]
    fp = digest("stanford-cars", keys, ids, names, labels)
    return Catalogue(spec, make_dataset([str(p) for p in images], labels, ids, names, car_metadata(names, labels)),
                     fp, first_class_number=1, item_keys=keys)


def car_metadata(names: list, labels: list) -> dict:
    """make, body style and year of each item, parsed from its class name
    ("Audi TTS Coupe 2012" -> Audi, Coupe, 2012)."""
    parsed = [parse_class_name(name) for name in names]
    return {field: (kind, [parsed[label][i] for label in labels])
            for i, (field, kind) in enumerate((("make", "string"), ("body", "string"), ("year", "integer")))}


MULTI_WORD_MAKES = ("AM General", "Aston Martin", "Land Rover")
# the body style word before the year, as the class names spell it -> the style
BODIES = {"Sedan": "Sedan", "SUV": "SUV", "Coupe": "Coupe", "Convertible": "Convertible", "Hatchback": "Hatchback",
          "Wagon": "Wagon", "Minivan": "Minivan", "Van": "Van", "Cab": "Pickup", "SuperCab": "Pickup"}


def parse_class_name(name: str) -> tuple:
    """(make, body, year) of a Stanford Cars class name; body "Other" where
    the name gives none ("Chevrolet Corvette ZR1 2012")."""
    words = name.split()
    make = next((m for m in MULTI_WORD_MAKES if name.startswith(m + " ")), words[0])
    year = int(words[-1]) if words[-1].isdigit() else None
    return make, BODIES.get(words[-2], "Other") if len(words) > 2 else "Other", year
