"""Choosing an approximate index's settings, kept apart from the backends
(as autofaiss keeps it): each backend offers a ladder of settings, cheapest
first, and a way to search audit queries with one; the first setting whose
recall@k against exact search meets the target *by a margin* is kept.

The margin is two standard errors of the audit's mean recall plus a little
headroom: stopping at the first step whose mean just reached the target
picked settings that then measured .985-.990 on fresh queries, and with the
two standard errors alone USearch at a million vectors was tuned to
expansion_search 256 (audit .993) and measured .987 on the bench's fresh
queries, where 384 measured .994."""

import numpy as np

from retrieval.index.base import TARGET_RECALL
from retrieval.vectors import per_query_recall

HEADROOM = 0.003


def meets_target(recalls: np.ndarray) -> bool:
    margin = 2 * recalls.std() / np.sqrt(len(recalls)) if len(recalls) > 1 else 0.0
    return recalls.mean() - margin >= TARGET_RECALL + HEADROOM


def first_meeting(ladder, search, truth: np.ndarray):
    """(setting, mean recall, met) of the first setting on `ladder` whose
    audit `search(setting)` (found keys per audit query) meets the target;
    the last setting (met False) when none does. `met`, not the mean, is
    what a backend's further tuning and its warning go by."""
    for setting in ladder:
        recalls = per_query_recall(search(setting), truth)
        met = meets_target(recalls)
        if met:
            break
    return setting, float(recalls.mean()), met
