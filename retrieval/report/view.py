"""A written report read back, for the app's Report tab: its tables, its
plots, and its 2-D maps redrawn with a query's position marked."""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval.errors import LookalikeError
from retrieval.report import plots
from retrieval.report.maps import query_position
from retrieval.report.writer import JSON_FILE, MAPS_FILE, tables


@dataclass
class ReportView:
    folder: Path
    report: dict
    ids: list               # catalogue ids of the mapped images
    labels: np.ndarray
    maps: dict              # embedding name -> (N, 2) positions

    def markdown(self) -> str:
        r = self.report
        return (f"Report on **{r['n_images']} images of {r['n_classes']} classes** of `{r['catalogue']}` "
                f"({r['date']}, {r['machine']}), made with\n\n```\n{r['command']}\n```\n\n" + tables(r))

    def plots(self) -> list:
        """(PNG path, caption) of every plot, in the report's order."""
        p = self.report["plots"]
        shown = [(p["recall"], "Recall@K of every embedding"),
                 (p["confusion"], f"Most confused classes ({self.report['confusion']['embedding']})")]
        shown += [(file, f"Example query {i + 1}") for i, file in enumerate(p["examples"])]
        shown += [(file, f"2-D map: {name}") for name, file in p["maps"].items()]
        return [(str(self.folder / file), caption) for file, caption in shown if (self.folder / file).is_file()]

    def query_map(self, embedding: str, result_ids, scores=None, query_id=None):
        """The embedding's map with the query starred (a PIL image), or None
        when the report has no map of that embedding or the query can't be
        placed (none of its results is among the report's images)."""
        if embedding not in self.maps:
            return None
        xy = self.maps[embedding]
        where = query_position(self.ids, xy, result_ids, scores if scores is not None else [1.0] * len(result_ids),
                               query_id)
        if where is None:
            return None
        classes = self.report["classes"]  # the classes present, in label order
        labels = np.searchsorted([c["label"] for c in classes], self.labels)
        fig = plots.map_figure(xy, labels, [c["name"] for c in classes], [c["number"] for c in classes],
                               f"{embedding}: the query on the map", query=where)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        return Image.open(io.BytesIO(buffer.getvalue()))


def open_report(folder) -> ReportView | None:
    """The report in `folder`, or None when there is none; a damaged one is
    a LookalikeError (the app shows it instead of the report)."""
    folder = Path(folder)
    if not (folder / JSON_FILE).is_file():
        return None
    try:
        report = json.loads((folder / JSON_FILE).read_text())
        with np.load(folder / MAPS_FILE, allow_pickle=False) as data:
            maps = {name: data[f"xy{i}"] for i, name in enumerate(report["maps_order"])}
            ids, labels = data["ids"].tolist(), data["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise LookalikeError(f"report {folder}: unreadable ({type(e).__name__}: {e}); "
                             "write it again with `python -m retrieval report`") from e
    return ReportView(folder, report, ids, labels, maps)


def open_reports(served, folder) -> dict:
    """{catalogue name: its ReportView, or why it can't be shown} for the
    served catalogues that have a report in folder/NAME."""
    found = {}
    for s in served:
        try:
            view = open_report(Path(folder) / s.config.name)
        except LookalikeError as e:
            found[s.config.name] = str(e)
            continue
        if view is not None:
            found[s.config.name] = view
    return found


def side_maps(view: ReportView, served, shown: dict, query_row=None) -> list:
    """For each side of the app's answer (pretrained, fine-tuned), its
    embedding's map with the query starred, or None (no map of that
    embedding in the report, or no result of the query on it). `shown`:
    the catalogue rows of each side's results."""
    ids = served.catalogue.ids
    query_id = ids[query_row] if query_row is not None else None
    images = []
    for side in ("pretrained", "finetuned"):
        rec = getattr(served, side)
        images.append(None if rec is None else view.query_map(rec.embedding_name, [ids[r] for r in shown.get(side, [])],
                                                              query_id=query_id))
    return images
