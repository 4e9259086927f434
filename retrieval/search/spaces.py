"""The deploy manifest (spaces.yaml): which catalogues the app serves, here
and on a Hugging Face Space, and how to make a catalogue's missing head."""

import os
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from retrieval.errors import LookalikeError


@dataclass(frozen=True)
class CatalogueConfig:
    """One catalogue to serve, as a manifest entry or a --catalogue flag gives it."""

    name: str
    spec: str
    backbone: str = "auto"
    head: str | None = None   # RUN_DIR or hub:REPO_ID of a fine-tuned head
    per_class: int | None = None
    classes: str | None = None


def on_space() -> bool:
    """Hugging Face Spaces set SPACE_ID; elsewhere this project runs offline."""
    return bool(os.environ.get("SPACE_ID"))


def load_manifest(path, space: bool | None = None) -> list:
    """The CatalogueConfigs that spaces.yaml lists for a Space or for a local run.

    Each catalogue entry has shared keys plus a `space:` and/or a `local:` block
    that overrides them; an entry without the block for this place is not served
    there. Relative paths (spec folders, RUN_DIRs) are relative to the manifest.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise LookalikeError(f"manifest {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("catalogues", []), list):
        raise LookalikeError(f"manifest {path}: expected a mapping with a `catalogues` list")
    place = "space" if (on_space() if space is None else space) else "local"
    keys = {f.name for f in fields(CatalogueConfig)}
    configs = []
    for item in data.get("catalogues", []):
        if not isinstance(item, dict) or not isinstance(item.get(place, {}), dict):
            raise LookalikeError(f"manifest {path}: catalogue entry {item!r} is not a mapping")
        if place not in item:
            continue
        merged = {k: v for k, v in item.items() if k not in ("space", "local")} | item[place]
        if set(merged) - keys or not {"name", "spec"} <= set(merged):
            raise LookalikeError(f"manifest {path}: catalogue entry {item!r} needs name and spec "
                                 f"and knows only {sorted(keys)}")
        if not isinstance(merged.get("per_class", 1), int):
            raise LookalikeError(f"manifest {path}: per_class of {merged['name']!r} must be a whole number")
        merged["spec"] = _beside(path.parent, str(merged["spec"]), must_exist=True)
        if merged.get("head"):
            merged["head"] = _beside(path.parent, str(merged["head"]), must_exist=False)
        configs.append(CatalogueConfig(**merged))
    return configs


def _beside(root: Path, value: str, must_exist: bool) -> str:
    """A relative path in the manifest, made relative to the working directory."""
    if value.startswith("hub:") or os.path.isabs(value) or (must_exist and not (root / value).exists()):
        return value
    return os.path.relpath(root / value)


def finetune_command(config: CatalogueConfig, public=False) -> str:
    """How to make the missing fine-tuned head of a catalogue (into its
    configured RUN_DIR, so the next start picks it up); `public`: with
    placeholders for the catalogue's spec and the RUN_DIR, for a page or API
    answer that must not show the server's paths."""
    output = config.head if config.head and not config.head.startswith("hub:") else f"runs/{config.name}"
    backbone = None if config.backbone == "auto" else config.backbone
    options = [("--catalogue", "CATALOGUE" if public else config.spec), ("--classes", config.classes),
               ("--per-class", config.per_class), ("--backbone", backbone),
               ("--output", "RUN_DIR" if public else output)]
    flags = " ".join(f"{flag} {value if public else shlex.quote(str(value))}" for flag, value in options
                     if value is not None)
    return f"python -m finetune {flags}"
