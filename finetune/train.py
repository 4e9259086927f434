"""Train an embedding head on cached backbone features with a metric-learning
loss, a class-balanced sampler and per-epoch class-disjoint validation;
keep the best epoch, stop early when validation stops improving."""

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from retrieval.errors import LookalikeError
from retrieval.evaluation.metrics import retrieval_metrics
from retrieval.models.heads import EmbeddingHead
from retrieval.models.views import pool
from retrieval.models.whitening import fit_head_whitening, pca_whitening_head

from .inputs import FrozenFeatures, StageInputs
from .losses import create_loss
from .sampler import MPerClassSampler
from .split import Split, class_disjoint_split

# Class proxies (proxy-anchor) start random and must travel far, while the
# projection starts from a sensible point: they learn at 10x its rate, the
# lower end of the 10-100x the proxy-anchor paper uses.
PROXY_LR_FACTOR = 10


@dataclass
class TrainConfig:
    loss: str = "supcon"            # or "none": whitening only, nothing trained
    epochs: int = 10
    projection_dim: int = 512
    whitening: str = "learned"      # learned | pca | none
    whitening_dim: int = 1536       # capped at the features' dim
    lr: float = 1e-3
    stage_lr: float = 1e-4          # unfrozen backbone stages (--unfreeze)
    weight_decay: float = 1e-4
    batch_size: int = 64
    images_per_class: int = 4       # MPerClassSampler's m
    patience: int = 3               # epochs without validation gain before stopping
    validation_fraction: float = 0.2
    seed: int = 0


@dataclass
class TrainResult:
    head: EmbeddingHead
    split: Split
    history: list = field(default_factory=list)   # per epoch: loss + validation metrics
    baselines: dict = field(default_factory=dict)  # pretrained / whitening on the validation classes
    untrained: dict = field(default_factory=dict)  # this head before training (epoch 0)
    best: dict = field(default_factory=dict)       # the kept epoch's entry (epoch 0: untrained)
    seconds: float = 0.0


def seed_everything(seed: int):
    """Python, numpy (MPerClassSampler draws from it) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_head(inputs, labels, config: TrainConfig, device=torch.device("cpu"), names=None,
               progress=None) -> TrainResult:
    """inputs: (N, V, dim) backbone features of each image's views, or
    StageInputs (`--unfreeze`); labels: (N,) ints; `progress` (a Progress)
    counts epochs, for the app's page."""
    if config.epochs < 1 and config.loss != "none":
        raise LookalikeError(f"--epochs must be at least 1, not {config.epochs}")
    seed_everything(config.seed)
    inputs = inputs if isinstance(inputs, (FrozenFeatures, StageInputs)) else FrozenFeatures(inputs)
    labels = np.asarray(labels)
    split = class_disjoint_split(labels, config.validation_fraction, names)
    train_labels, validation_labels = torch.as_tensor(labels[split.train]), labels[split.validation]

    started = time.perf_counter()
    pretrained_train = inputs.all_views(split.train, device)
    pretrained_validation = inputs.all_views(split.validation, device).numpy()

    def validate(head, views) -> dict:
        head.eval()
        with torch.no_grad():
            per_view = head(torch.as_tensor(views, device=device)).cpu().numpy()
        return retrieval_metrics(pool(per_view), validation_labels, progress=False)

    head = build_untrained_head(inputs.dim, pretrained_train, train_labels, config, inputs.tail)
    result = TrainResult(head, split)
    result.baselines = {
        "pretrained": retrieval_metrics(pool(pretrained_validation), validation_labels, progress=False),
        "whitening": validate(pca_whitening_head(pretrained_train, config.whitening_dim).to(device),
                              pretrained_validation),
    }
    head.to(device)
    result.untrained = validate(head, pretrained_validation)
    result.best = dict(result.untrained, epoch=0)
    if config.loss != "none":
        best_state, stale = copy.deepcopy(head.state_dict()), 0
        epochs = Epochs(head, inputs, split.train, train_labels, config, device)
        if progress is not None:
            progress.start("fine-tuning a head", config.epochs, "epochs")
        bar = tqdm(range(1, config.epochs + 1), desc=f"fine-tune {config.loss}", unit="epoch")
        for epoch in bar:
            loss = epochs.run(epoch)
            if progress is not None:
                progress.advance(epoch)
            views = pretrained_validation
            if head.tail is not None:  # the stages moved: the whitening follows them, validation reruns them
                fit_head_whitening(head, inputs.all_views(split.train, device), train_labels, config.whitening)
                views = inputs.all_views(split.validation, device).numpy()
            entry = dict(epoch=epoch, loss=round(loss, 5), **validate(head, views))
            result.history.append(entry)
            bar.set_postfix(loss=entry["loss"], r1=round(entry["recall_at_1"], 3),
                                 map_r=round(entry["map_at_r"], 4))
            if entry["map_at_r"] > result.best["map_at_r"]:
                result.best, best_state, stale = dict(entry), copy.deepcopy(head.state_dict()), 0
            else:
                stale += 1
                if stale >= config.patience:
                    bar.write(f"early stop: validation MAP@R has not improved for {stale} epochs")
                    break
        head.load_state_dict(best_state)
    result.head = head.cpu().eval()
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def build_untrained_head(dim, train_views, train_labels, config: TrainConfig, tail=None) -> EmbeddingHead:
    """A head whose whitening part is fitted (closed form) and whose projection
    is freshly initialised."""
    whitening_dim = 0 if config.whitening == "none" else min(config.whitening_dim, dim)
    projection_dim = 0 if config.loss == "none" else config.projection_dim
    head = EmbeddingHead(dim, projection_dim, whitening_dim, tail)
    fit_head_whitening(head, train_views, train_labels, config.whitening)
    return head




class Epochs:
    """The training side of the epochs: optimiser, sampler, schedule, AMP."""

    def __init__(self, head, inputs, rows, labels, config: TrainConfig, device):
        n_classes = int(labels.unique().numel())
        m = config.images_per_class
        self.batch_size = min(config.batch_size, m * n_classes) // m * m  # the sampler needs enough classes
        if self.batch_size < 2 * m:
            raise LookalikeError(f"{n_classes} training classes are too few for batches of {m} images per class")
        self.loss_fn, self.miner = create_loss(config.loss, n_classes, config.projection_dim)
        self.loss_fn.to(device)
        groups = [{"params": head.projection.parameters()}]
        if head.tail is not None:  # pretrained stages move slower than the fresh projection
            groups.append({"params": head.tail.parameters(), "lr": config.stage_lr})
        if list(self.loss_fn.parameters()):
            groups.append({"params": self.loss_fn.parameters(), "lr": config.lr * PROXY_LR_FACTOR})
        self.optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.sampler = MPerClassSampler(labels.tolist(), m=m, batch_size=self.batch_size,
                                        length_before_new_iter=max(len(labels), self.batch_size))
        self.steps = len(self.sampler) // self.batch_size
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, config.epochs * self.steps)
        self.amp = device.type == "cuda"  # mixed precision on the GPU
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.head, self.inputs, self.labels, self.device = head, inputs, labels, device
        self.rows = torch.as_tensor(rows)

    def run(self, epoch: int) -> float:
        """One epoch; returns its mean loss."""
        # BatchNorm of unfrozen stages keeps its pretrained statistics: batches
        # of 16 classes x 4 images would skew them (eval mode still trains weights)
        self.head.eval()
        order = torch.tensor(list(iter(self.sampler)))
        total = 0.0
        for b in tqdm(range(self.steps), desc=f"epoch {epoch}", unit="batch", leave=False,
                      disable=self.head.tail is None):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            view = torch.randint(0, self.inputs.n_views, (len(batch),))  # a random view: free augmentation
            y = self.labels[batch].to(self.device)
            with torch.autocast("cuda", enabled=self.amp):
                embeddings = self.head.project(self.inputs.batch(self.rows[batch], view, self.device))
                loss = (self.loss_fn(embeddings, y, self.miner(embeddings, y)) if self.miner
                        else self.loss_fn(embeddings, y))
            self.optimiser.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
            self.schedule.step()
            total += loss.item()
        return total / self.steps
