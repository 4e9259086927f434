"""A run folder (RUN_DIR): the one reader and writer of its format.

A run is a trained model Lookalike saved: a fine-tuned embedding head
(kind "head", weights head.safetensors) or the report's autoencoder (kind
"autoencoder", weights autoencoder.safetensors). Both keep config.json (the
typed RunConfig below, with the record of the weights' size and checksum
and the digest of its own contents), the training's metrics.json and
curves.png, and for heads a model card README.md. A folder is written whole,
atomically, and marked as a run: it replaces only an earlier run, never a
folder of anything else (store.atomic), with --overwrite.

Formats read: 2 (current); 1, the flat config of runs written before
formats were numbered (heads); the autoencoder's own autoencoder.json of
earlier versions."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from retrieval.errors import DamagedArtefact, LookalikeError
from retrieval.models import views as view_ops
from retrieval.models.backbones import backbone_spec
from retrieval.store.artefacts import SEAL, check, check_seal, record, seal
from retrieval.store.atomic import Layout, atomic_dir, check_replaceable, write_json

FORMAT_VERSION = 2
CONFIG_FILE, METRICS_FILE, CURVES_FILE, CARD_FILE = "config.json", "metrics.json", "curves.png", "README.md"
WEIGHTS = {"head": "head.safetensors", "autoencoder": "autoencoder.safetensors"}
LEGACY_AUTOENCODER_CONFIG = "autoencoder.json"
KIND = "run"  # the folder marker (store.atomic)
# what runs written before folders were marked hold
LEGACY = Layout(CONFIG_FILE, (CONFIG_FILE, METRICS_FILE, CURVES_FILE, CARD_FILE, *WEIGHTS.values()))
LEGACY_AUTOENCODER = Layout(LEGACY_AUTOENCODER_CONFIG, (LEGACY_AUTOENCODER_CONFIG, CURVES_FILE, *WEIGHTS.values()))


@dataclass(frozen=True)
class HeadArchitecture:
    in_dim: int
    projection_dim: int
    whitening_dim: int
    tail_start: int | None = None  # the first fine-tuned backbone stage (--unfreeze), if any


@dataclass(frozen=True)
class EmbedderConfig:
    """Everything an embedding head belongs to: the backbone's config (name,
    weights, preprocessing, pooling, quirks), the test-time views, the head."""

    backbone: dict
    views: tuple
    head: HeadArchitecture


@dataclass(frozen=True)
class AutoencoderArchitecture:
    input_size: int
    latent: int


@dataclass
class RunConfig:
    kind: str                               # "head" | "autoencoder"
    name: str | None
    training: dict = field(default_factory=dict)  # what it was trained on and how
    embedder: EmbedderConfig | None = None  # kind "head"
    autoencoder: AutoencoderArchitecture | None = None  # kind "autoencoder"
    files: dict | None = None               # record of the weights (None: a format 1 run)

    @property
    def weights_file(self) -> str:
        return WEIGHTS[self.kind]

    def to_json(self) -> dict:
        out = {"format_version": FORMAT_VERSION, "name": self.name, "training": self.training, "files": self.files}
        if self.kind == "head":
            out["embedder"] = dict(asdict(self.embedder), views=list(self.embedder.views))
        else:
            out.update(kind=self.kind, autoencoder=asdict(self.autoencoder))
        return out


def head_config(name: str, backbone: dict, views, architecture: dict, training: dict | None = None) -> RunConfig:
    return RunConfig("head", name, training or {},
                     EmbedderConfig(backbone, view_ops.check_views(views), HeadArchitecture(**architecture)))


def write_files(folder, config: RunConfig, state: dict) -> RunConfig:
    """The weights (`state`, a state dict) and config.json (sealed, with the
    weights' record) into `folder`; the config as written."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / config.weights_file))
    config.files = record(folder, [config.weights_file])
    write_json(folder / CONFIG_FILE, seal(config.to_json()))
    return config


def check_output(output, overwrite: bool) -> Path:
    """Where a run will be written, checked before any slow work: an earlier
    run is replaced only with --overwrite, and a folder that isn't a run of
    ours never (nothing of the user's is deleted)."""
    output = Path(output)
    check_replaceable(output, KIND, "--output", _legacy(output))
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        holds = "an autoencoder" if _kind(output) == "autoencoder" else "a fine-tuned head"
        raise LookalikeError(f"{output} already holds {holds}; pass --overwrite or another --output")
    return output


def save_run(output, config: RunConfig, state: dict, extras: dict) -> Path:
    """Write the run atomically: weights, config.json, and `extras` (file
    name -> function writing that file at the path it is given)."""
    output = Path(output)
    with atomic_dir(output, KIND, "--output", _legacy(output)) as tmp:
        write_files(tmp, config, state)
        for name, write in extras.items():
            write(tmp / name)
    return output


def read_run(run_dir, kind: str) -> RunConfig:
    """A run's config in the current format, its weights checked against
    their record; one clear LookalikeError for anything else."""
    run_dir = Path(run_dir)
    legacy = run_dir / LEGACY_AUTOENCODER_CONFIG
    path = legacy if kind == "autoencoder" and legacy.is_file() and not (run_dir / CONFIG_FILE).is_file() \
        else run_dir / CONFIG_FILE
    if not path.is_file() or not (run_dir / WEIGHTS[kind]).is_file():
        command = "python -m finetune" + (" --method autoencoder" if kind == "autoencoder" else " --catalogue SPEC")
        raise LookalikeError(f"{run_dir}: not a {_KIND_NAMES[kind]} run (needs {WEIGHTS[kind]} and {CONFIG_FILE}); "
                             f"make one with `{command} --output RUN_DIR`")
    try:
        config = _parse(json.loads(path.read_bytes()), path, kind)
    except LookalikeError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise LookalikeError(f"{path}: not a valid run config ({type(e).__name__}: {_one_line(e)}); "
                             "retrain it with `python -m finetune`") from e
    if config.files is not None:  # runs of format 1 recorded no checksums
        try:
            check(run_dir, config.files, deep=True, required=[config.weights_file])  # small: always hashed
        except DamagedArtefact as e:
            raise LookalikeError(f"{e}; retrain it with `python -m finetune`") from e
    return config


def load_weights(run_dir, config: RunConfig, module, name=None):
    """`module` (built to the config's architecture) with the run's weights
    loaded strictly; a damaged weights file, or one that doesn't fit the
    module, is one LookalikeError naming `name` (default: the folder)."""
    from safetensors.torch import load_file

    path = Path(run_dir) / config.weights_file
    try:
        state = load_file(path)
    except Exception as e:  # a damaged file: safetensors raises several types
        raise LookalikeError(f"{path}: damaged ({type(e).__name__}: {_one_line(e)})") from e
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:  # wrong shapes or names
        raise LookalikeError(f"{name or run_dir}: {config.weights_file} does not match its {CONFIG_FILE} "
                             f"({_one_line(e)})") from e
    return module


def read_metrics(run_dir) -> dict:
    """{"metrics": metrics.json, "curves": path of curves.png or None}, or
    {"error": why} (what the app's metrics tab shows)."""
    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / METRICS_FILE).read_bytes())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as e:
        return {"error": f"{run_dir.name}/{METRICS_FILE}: {type(e).__name__}"}
    curves = run_dir / CURVES_FILE
    return {"metrics": metrics, "curves": str(curves) if curves.is_file() else None}


_KIND_NAMES = {"head": "fine-tuning", "autoencoder": "autoencoder"}


def _parse(data, path: Path, kind: str) -> RunConfig:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if SEAL in data:
        check_seal(path, data)
    if path.name == LEGACY_AUTOENCODER_CONFIG:
        return _autoencoder(data, {**data.get("training", {}), "config": data["config"], "history": data["history"],
                                   "train_seconds": data["train_seconds"]}, data["config"]["latent"])
    version = data.get("format_version", 1)
    if version == 1:
        return _upgrade_format_1(data)
    if version != FORMAT_VERSION:
        raise LookalikeError(f"{path}: written in config format {version}, this Lookalike reads "
                             f"{FORMAT_VERSION}; upgrade Lookalike or retrain it")
    if data.get("kind", "head") != kind:
        raise LookalikeError(f"{path.parent}: a {data.get('kind', 'head')} run, not a {_KIND_NAMES[kind]} run")
    if kind == "autoencoder":
        return _autoencoder(data, data["training"], data["autoencoder"]["latent"], data["files"])
    embedder = data["embedder"]
    backbone = embedder["backbone"]
    backbone["backbone"], backbone["weights"]
    return RunConfig("head", data.get("name"), data.get("training") or {},
                     EmbedderConfig(backbone, view_ops.check_views(embedder["views"]),
                                    HeadArchitecture(**embedder["head"])), files=data["files"])


def _autoencoder(data: dict, training: dict, latent: int, files=None) -> RunConfig:
    size = data.get("input_size", data.get("autoencoder", {}).get("input_size"))
    if not isinstance(size, int) or not isinstance(latent, int):
        raise ValueError(f"input size {size!r}, latent {latent!r}")
    return RunConfig("autoencoder", data.get("name"), training, autoencoder=AutoencoderArchitecture(size, latent),
                     files=files if files is not None else data["files"])


def _upgrade_format_1(config: dict) -> RunConfig:
    """Format 1 kept everything flat and described the preprocessing as text.
    It upgrades when that text is what this version's registry would have
    written then (same size, interpolation, normalisation, pooling, views)."""
    spec = backbone_spec(config["backbone"])
    p = spec.preprocessing
    pooling = config["preprocessing"].split("/")[3]
    then = (f"resize-whole-{p.size[0]}x{p.size[1]}-{p.interpolation}/mean{tuple(p.mean)}/std{tuple(p.std)}/"
            f"{pooling}/views-orig-mirror")
    if config["preprocessing"] != then or spec.quirks or p.resize != "whole":
        raise LookalikeError(f"run {config.get('name')!r} was written by an older Lookalike with preprocessing "
                             f"{config['preprocessing']!r}, which this version no longer makes; retrain it")
    head = HeadArchitecture(config["in_dim"], config["projection_dim"], config["whitening_dim"],
                            config.get("tail_start") if config.get("unfreeze") else None)
    moved = {"backbone", "weights", "preprocessing", "in_dim", "projection_dim", "whitening_dim", "tail_start",
             "name"}
    backbone = {"backbone": spec.name, "weights": config["weights"], "pooling": pooling,
                "preprocessing": p.config(), "quirks": spec.quirks}
    return RunConfig("head", config.get("name"), {k: v for k, v in config.items() if k not in moved},
                     EmbedderConfig(backbone, view_ops.DEFAULT_VIEWS, head))


def _legacy(folder: Path) -> Layout:
    return LEGACY_AUTOENCODER if (folder / LEGACY_AUTOENCODER_CONFIG).is_file() else LEGACY


def _kind(folder: Path) -> str:
    """The kind of the run in `folder` (as far as its config says)."""
    if (folder / LEGACY_AUTOENCODER_CONFIG).is_file():
        return "autoencoder"
    try:
        data = json.loads((folder / CONFIG_FILE).read_bytes())
    except (OSError, ValueError, RecursionError):
        return "head"
    return data.get("kind", "head") if isinstance(data, dict) else "head"


def _one_line(error) -> str:
    return " ".join(str(error).split())[:200]
