"""Write the Stanford Cars folder as a shop's CSV manifest, an example of the
format (README, "Catalogues"): one row per image with its id, its class as
`label`, and make, body style and year parsed from the class name.

    python scripts/cars_manifest.py ../shared/data/stanford-cars-thumbs cars.csv

Image paths are written relative to the manifest's folder (so the manifest
and the images can move together). The CSV is written to a temporary name
and renamed; an existing file is kept unless --overwrite."""

import argparse
import csv
import io
import os
import sys
from pathlib import Path

from retrieval.data.catalogues import load_catalogue
from retrieval.errors import LookalikeError
from retrieval.store.atomic import write_bytes


def manifest_rows(folder: str, base: Path) -> list:
    catalogue = load_catalogue(folder)
    table = catalogue.metadata_table
    rows = []
    for row in range(len(catalogue)):
        image = catalogue.image_source(row)
        rows.append({"image": os.path.relpath(image, base), "id": catalogue.ids[row],
                     "label": table["label"][row].as_py(), "make": table["make"][row].as_py(),
                     "body": table["body"][row].as_py(), "year": table["year"][row].as_py()})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a Stanford Cars folder (cars_train/ + devkit/)")
    p.add_argument("output", help="the CSV to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT when it exists")
    args = p.parse_args(argv)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        p.error(f"{output} exists; pass --overwrite to replace it")
    try:
        rows = manifest_rows(args.folder, output.resolve().parent)
    except LookalikeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(output, text.getvalue().encode())
    print(f"{len(rows)} items -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
