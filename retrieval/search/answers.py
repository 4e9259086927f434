"""Render-ready answers: what one query returns, with everything the page and
the API show (thumbnails, same-class marks, hit counts), so both render the
same records and neither computes anything of its own."""

from dataclasses import dataclass, field
from pathlib import Path

from retrieval.search.thumbnails import data_url

SIDES = ("pretrained", "finetuned")


@dataclass
class Match:
    """One recommended catalogue item."""

    rank: int
    id: str
    label: str | None           # None in a catalogue without classes
    score: float
    row: int                    # catalogue row (a clicked result becomes the next query)
    thumbnail: Path
    same_class: bool | None     # None when the query's class is unknown (an upload)
    metadata: dict = field(default_factory=dict)
    near_identical: list = field(default_factory=list)  # ids of results collapsed into this one

    def to_dict(self) -> dict:
        return {"rank": self.rank, "id": self.id, "label": self.label, "score": self.score,
                "image": data_url(self.thumbnail), "same_class": self.same_class, "metadata": self.metadata,
                "near_identical": self.near_identical}


@dataclass
class Side:
    """One embedding's results: `note` says why there are none."""

    embedding: str | None
    results: list = field(default_factory=list)
    note: str | None = None

    @property
    def same_class(self) -> int | None:
        """How many results share the query's class (the query itself is
        never among them), when that class is known."""
        marks = [m.same_class for m in self.results]
        return None if not marks or None in marks else sum(marks)

    def to_dict(self) -> dict:
        return {"embedding": self.embedding, "results": [m.to_dict() for m in self.results],
                "same_class": self.same_class, "note": self.note}


@dataclass
class QueryItem:
    """A catalogue item used as the query: shown apart, left out of its results."""

    id: str
    label: str | None
    thumbnail: Path
    metadata: dict = field(default_factory=dict)


@dataclass
class Answer:
    catalogue: str
    backbone: str
    k: int
    query: QueryItem | None
    sides: dict                 # side name -> Side

    def to_dict(self) -> dict:
        """The /recommend JSON: thumbnails as data URLs."""
        query = None if self.query is None else {"id": self.query.id, "label": self.query.label,
                                                 "image": data_url(self.query.thumbnail),
                                                 "metadata": self.query.metadata}
        return {"catalogue": self.catalogue, "backbone": self.backbone, "k": self.k, "query": query,
                **{side: self.sides[side].to_dict() for side in SIDES}}
