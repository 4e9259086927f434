"""How liked and disliked examples should become one query, measured (issue
#22): on a labelled catalogue's embeddings, for every class with enough
images, queries made of 1, 2 and 3 liked items of the class (random draws),
and of one liked item plus one disliked result (its nearest result of
another class). For each rule it prints the share of same-class results in
the top 10 (the examples left out), and with a disliked result how many
results of the disliked item's class remain.

    python scripts/feedback_eval.py --catalogue ../shared/data/stanford-cars-thumbs --classes 50-98

Rules: `mean` (the normalised mean of the liked minus w times the mean of the
disliked, Rocchio), `max` (an item's best similarity to a liked example minus
w times its best to a disliked one), for several w."""

import argparse
import json
import sys

import numpy as np

from retrieval.search.query import combine
from retrieval.search.recommender import Recommender
from retrieval.vectors import l2_normalise

TOP, DRAWS, WEIGHTS = 10, 5, (0.0, 0.25, 0.5, 1.0)


def scores(rule: str, emb: np.ndarray, liked: list, disliked: list, w: float) -> np.ndarray:
    if rule == "mean":  # what the product does
        return emb @ combine(emb[liked], emb[disliked] if disliked else None, w)
    best = (emb @ emb[liked].T).max(1)
    return best - w * (emb @ emb[disliked].T).max(1) if disliked else best


def top(score: np.ndarray, exclude: list) -> np.ndarray:
    score = score.copy()
    score[exclude] = -np.inf
    return np.argsort(-score, kind="stable")[:TOP]


def evaluate(emb: np.ndarray, labels: np.ndarray, seed=0) -> dict:
    """Every rule sees the same random draws (a paired comparison)."""
    classes = [c for c in np.unique(labels) if (labels == c).sum() >= 4 + TOP // 10]
    out = {}
    for rule in ("mean", "max"):
        rng = np.random.default_rng(seed)
        for n_liked in (1, 2, 3):
            shares = []
            for c in classes:
                members = np.flatnonzero(labels == c)
                for _ in range(DRAWS):
                    liked = rng.choice(members, n_liked, replace=False).tolist()
                    found = top(scores(rule, emb, liked, [], 0), liked)
                    shares.append((labels[found] == c).mean())
            out[f"{rule} liked={n_liked}"] = round(float(np.mean(shares)), 4)
        for w in WEIGHTS[1:]:
            rng = np.random.default_rng(seed + 1)
            same, same_before, of_disliked, before_disliked = [], [], [], []
            for c in classes:
                members = np.flatnonzero(labels == c)
                for _ in range(DRAWS):
                    liked = [int(rng.choice(members))]
                    first = top(scores(rule, emb, liked, [], 0), liked)
                    wrong = [r for r in first if labels[r] != c]
                    if not wrong:
                        continue
                    disliked = [int(wrong[0])]
                    found = top(scores(rule, emb, liked, disliked, w), liked + disliked)
                    same.append((labels[found] == c).mean())
                    same_before.append((labels[first] == c).mean())
                    before_disliked.append((labels[first] == labels[disliked[0]]).sum())
                    of_disliked.append((labels[found] == labels[disliked[0]]).sum())
            out[f"{rule} liked=1 disliked=1 w={w}"] = {
                "same_class_share_before": round(float(np.mean(same_before)), 4),
                "same_class_share": round(float(np.mean(same)), 4),
                "results_of_disliked_class_before": round(float(np.mean(before_disliked)), 3),
                "results_of_disliked_class_after": round(float(np.mean(of_disliked)), 3)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogue", required=True)
    p.add_argument("--classes")
    p.add_argument("--head")
    p.add_argument("--backbone", default="auto")
    p.add_argument("--cache-dir")
    args = p.parse_args(argv)
    rec = Recommender.open(args.catalogue, backbone=args.backbone, head=args.head, classes=args.classes,
                           cache_dir=args.cache_dir)
    emb, rows = rec.catalogue_embeddings()
    labels = np.asarray([rec.catalogue.labels[r] for r in rows])
    print(json.dumps({"catalogue": args.catalogue, "classes": args.classes, "embedding": rec.embedding_name,
                      "images": len(rows), **evaluate(l2_normalise(emb), labels)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
