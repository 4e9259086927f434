"""Class-disjoint train/validation split of labelled features: validation
classes are never trained on, so it measures what fine-tuning does for
classes the model has not seen (as the catalogue's future items will be)."""

from dataclasses import dataclass

import numpy as np

from retrieval.errors import LookalikeError


@dataclass
class Split:
    train: np.ndarray        # row positions into the feature array
    validation: np.ndarray
    train_classes: list      # label ids
    validation_classes: list


def class_disjoint_split(labels, validation_fraction: float = 0.2, names=None) -> Split:
    """The last `validation_fraction` of the classes (in label order) validate."""
    labels = np.asarray(labels)
    if not 0 < validation_fraction < 1:
        raise LookalikeError(f"--validation-fraction must be between 0 and 1, not {validation_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    lonely = [names[c] if names else str(c) for c in classes[counts < 2]]
    if lonely:
        raise LookalikeError(f"{len(lonely)} class(es) have fewer than 2 images, so they can't form a "
                             f"positive pair: {', '.join(map(str, lonely[:5]))}"
                             + ("..." if len(lonely) > 5 else "") + "; drop them with --classes")
    n_validation = int(round(len(classes) * validation_fraction))
    if n_validation < 2 or len(classes) - n_validation < 2:
        raise LookalikeError(f"{len(classes)} classes can't be split into >= 2 training and >= 2 validation "
                             f"classes with --validation-fraction {validation_fraction}")
    validation_classes = classes[-n_validation:]
    in_validation = np.isin(labels, validation_classes)
    return Split(np.flatnonzero(~in_validation), np.flatnonzero(in_validation),
                 classes[:-n_validation].tolist(), validation_classes.tolist())
