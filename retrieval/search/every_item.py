"""Every catalogue item's lookalikes at once (`python -m retrieval
recommend`): the items' stored embeddings queried in blocks through the
index (one call per block and filter group), written as one table."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from retrieval.store.atomic import atomic_path

if TYPE_CHECKING:
    from retrieval.search.recommender import Recommender

SUFFIXES = (".parquet", ".csv", ".jsonl")

BLOCK = 512  # queries per index call


def recommend_all(rec: "Recommender", k: int, where=None, progress=None) -> pa.Table:
    """Columns query_id, rank, id, score, label: each indexed item's top k
    (itself left out), filtered by `where` (whose `query.FIELD`s are the
    item's own)."""
    if rec.index is None:
        rec.build()
    rows = np.flatnonzero(rec.indexed)
    columns = {"query_id": [], "rank": [], "id": [], "score": [], "label": []}
    if progress is not None:
        progress.start("recommending every item", len(rows), "items")
    with tqdm(total=len(rows), desc="recommend", unit="item") as bar:
        for start in range(0, len(rows), BLOCK):
            block = rows[start:start + BLOCK].tolist()
            queries = rec.index.vectors(rec.row_keys[block])
            answers = rec.search_many(queries, k, exclude_rows=[(row,) for row in block], where=where,
                                      query_rows=block)
            for row, results in zip(block, answers):
                for r in results:
                    columns["query_id"].append(rec.catalogue.ids[row])
                    columns["rank"].append(r.rank)
                    columns["id"].append(r.id)
                    columns["score"].append(r.score)
                    columns["label"].append(r.label)
            bar.update(len(block))
            if progress is not None:
                progress.advance(bar.n)
    types = {"query_id": pa.string(), "rank": pa.int32(), "id": pa.string(), "score": pa.float32(),
             "label": pa.string()}
    return pa.table({name: pa.array(values, types[name]) for name, values in columns.items()})


def write_table(table: pa.Table, path) -> None:
    """As parquet, CSV or JSON lines by the file's suffix, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            pq.write_table(table, tmp)
        elif path.suffix == ".csv":
            pcsv.write_csv(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for record in table.to_pylist():
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
