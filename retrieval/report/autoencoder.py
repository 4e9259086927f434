"""A small convolutional autoencoder trained without labels on a catalogue's
images (32x32 RGB in, a 32-d latent code out): the report's baseline for
"what does a model learn from these images alone", beside handcrafted
features and ImageNet backbones. `python -m finetune --method autoencoder`
saves one (a run folder of kind "autoencoder": embedding/run_dir.py);
`python -m retrieval report --autoencoder RUN_DIR` embeds with it.

A run of its own kind, not an embedding head: it reads pixels, not backbone
features, so the run folder says so and a head loader refuses it."""

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from retrieval.data.catalogue import Catalogue
from retrieval.embedding.run_dir import (
    CURVES_FILE,
    AutoencoderArchitecture,
    RunConfig,
    load_weights,
    read_run,
    save_run,
)
from retrieval.errors import LookalikeError
from retrieval.report import plots

SIZE, LATENT = 32, 32


@dataclass
class AutoencoderConfig:
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    latent: int = LATENT
    seed: int = 0


@dataclass
class AutoencoderResult:
    model: "ConvAutoencoder"
    history: list = field(default_factory=list)  # per epoch: {"epoch", "loss"} (mean squared error)
    seconds: float = 0.0


@contextmanager
def one_thread():
    """Run torch on one thread, then restore the setting: the autoencoder's
    ops are too small to split. 6 epochs of 64 images on the 2-core dev
    machine, loaded by other work: 1.7 s of CPU and 11.5 s wall on one
    thread, 12.2 s of CPU (threads waiting on each other) and 56 s on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ConvAutoencoder(nn.Module):
    """32x32x3 -> three stride-2 convolutions -> linear -> latent, and back."""

    def __init__(self, latent: int = LATENT):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),    # 16x16
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),   # 8x8
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
            nn.Flatten(), nn.Linear(128 * 4 * 4, latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 128 * 4 * 4), nn.ReLU(), nn.Unflatten(1, (128, 4, 4)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.inference_mode()
    def encode(self, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, 3, 32, 32) pixels in [0, 1] -> (N, latent) codes."""
        self.eval()
        x = torch.as_tensor(pixels)
        with one_thread():
            return torch.cat([self.encoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def pixels(images) -> np.ndarray:
    """PIL RGB images -> (N, 3, 32, 32) float32 in [0, 1], each resized whole."""
    from PIL import Image

    arrays = [np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
              for im in images]
    return np.stack(arrays).transpose(0, 3, 1, 2).copy()


def catalogue_pixels(catalogue: Catalogue, rows=None):
    """(pixels, rows) of the catalogue's decodable images (all rows, or `rows`)."""
    kept, images = [], []
    for row in tqdm(range(len(catalogue)) if rows is None else rows, desc="pixels 32x32", unit="img"):
        try:
            images.append(catalogue.image(int(row)))
        except LookalikeError:
            continue
        kept.append(int(row))
    if not kept:
        raise LookalikeError(f"catalogue {catalogue.spec!r}: none of its images could be read")
    return pixels(images), np.asarray(kept, dtype=np.int64)


def train_autoencoder(data: np.ndarray, config: AutoencoderConfig = AutoencoderConfig()) -> AutoencoderResult:
    """Minimise the mean squared reconstruction error of `data` (N, 3, 32, 32),
    no labels; each image is shown as itself or its mirror image at random."""
    if config.epochs < 1:
        raise LookalikeError(f"--epochs must be at least 1, not {config.epochs}")
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ConvAutoencoder(config.latent)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    x = torch.as_tensor(data)
    result, started = AutoencoderResult(model), time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc="autoencoder", unit="epoch")
    with one_thread():
        for epoch in bar:
            _epoch(model, optimiser, x, config.batch_size, generator, epoch, result.history)
            bar.set_postfix(loss=result.history[-1]["loss"])
    result.model = model.eval()
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def _epoch(model, optimiser, x, batch_size, generator, epoch, history):
    model.train()
    order, total = torch.randperm(len(x), generator=generator), 0.0
    for start in range(0, len(x), batch_size):
        batch = x[order[start:start + batch_size]]
        flip = torch.rand(len(batch), generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        loss = nn.functional.mse_loss(model(batch), batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total += loss.item() * len(batch)
    history.append({"epoch": epoch, "loss": round(total / len(x), 6)})


def save_autoencoder(output, result: AutoencoderResult, config: AutoencoderConfig, training: dict) -> Path:
    """Write RUN_DIR atomically, as a run of kind "autoencoder": weights,
    config.json (architecture, where it was trained, its settings, per-epoch
    loss, checksums) and the loss curve."""
    output = Path(output)
    training = dict(training, config=asdict(config), history=result.history, train_seconds=result.seconds)
    run = RunConfig("autoencoder", output.name, training, autoencoder=AutoencoderArchitecture(SIZE, config.latent))
    curves = {CURVES_FILE: lambda path: plot_loss(path, result.history,
                                                  f"{output.name}: autoencoder reconstruction loss")}
    return save_run(output, run, result.model.state_dict(), curves)


def load_autoencoder(folder) -> ConvAutoencoder:
    """The model of a RUN_DIR written by `save_autoencoder`, checked first."""
    config = read_run(folder, "autoencoder")
    if config.autoencoder.input_size != SIZE:
        raise LookalikeError(f"{folder}: an autoencoder of {config.autoencoder.input_size}px inputs, not {SIZE}px")
    return load_weights(folder, config, ConvAutoencoder(config.autoencoder.latent)).eval()


def plot_loss(path, history: list, title: str):
    """Reconstruction loss per epoch: it should go down."""
    fig = Figure(figsize=(5, 3.2))
    axes = fig.subplots()
    axes.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o")
    axes.set(title=title, xlabel="epoch", ylabel="mean squared error")
    fig.tight_layout()
    plots.save(fig, path)
