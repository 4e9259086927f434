"""Train an embedding head on cached backbone features with a metric-learning
loss, a class-balanced sampler and per-epoch class-disjoint validation;
keep the best epoch, stop early when validation stops improving."""

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from tqdm.auto import tqdm

from retrieval.errors import LookalikeError
from retrieval.evaluate import retrieval_metrics
from retrieval.heads import EmbeddingHead, embed_views

from .losses import create_loss
from .inputs import FrozenFeatures, StageInputs
from .split import Split, class_disjoint_split
from .whitening import fit_whitening


@dataclass
class TrainConfig:
    loss: str = "supcon"            # or "none": whitening only, nothing trained
    epochs: int = 10
    projection_dim: int = 512
    whitening: str = "learned"      # learned | pca | none
    whitening_dim: int = 1024
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
    best: dict = field(default_factory=dict)
    seconds: float = 0.0


def seed_everything(seed: int):
    """Python, numpy (MPerClassSampler draws from it) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_head(inputs, labels, config: TrainConfig, device=torch.device("cpu"), names=None) -> TrainResult:
    """inputs: (N, 2, dim) backbone features (image, mirror), or StageInputs
    (`--unfreeze`); labels: (N,) ints."""
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

    def validate(head, stages_moved=True) -> dict:
        """Validation metrics. Once unfrozen stages have trained, the validation
        images run through them again and the whitening follows them; before
        that (baselines, untrained head) the pretrained inputs serve as they are."""
        head.eval()
        views = pretrained_validation
        if head.tail is not None and stages_moved:
            fit_head_whitening(head, inputs.all_views(split.train, device), train_labels, config)
            views = inputs.all_views(split.validation, device).numpy()
        with torch.no_grad():
            embeddings = embed_views(views, lambda x: head(torch.as_tensor(x, device=device)).cpu().numpy())
        return retrieval_metrics(embeddings, validation_labels, progress=False)

    whitening_baseline = build_untrained_head(
        inputs.dim, pretrained_train, train_labels,
        TrainConfig(loss="none", whitening="pca", whitening_dim=config.whitening_dim)).to(device)
    result = TrainResult(build_untrained_head(inputs.dim, pretrained_train, train_labels, config, inputs.tail),
                         split)
    result.baselines = {
        "pretrained": retrieval_metrics(embed_views(pretrained_validation), validation_labels, progress=False),
        "whitening": validate(whitening_baseline),
    }
    head = result.head.to(device)
    result.untrained = validate(head, stages_moved=False)
    result.best = dict(result.untrained, epoch=0)
    if config.loss != "none":
        best_state = copy.deepcopy(head.state_dict())
        for entry in _epochs(head, inputs, split.train, train_labels, config, device, validate):
            result.history.append(entry)
            if entry["map_at_r"] > result.best["map_at_r"]:
                result.best, best_state = dict(entry), copy.deepcopy(head.state_dict())
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
    fit_head_whitening(head, train_views, train_labels, config)
    return head


def fit_head_whitening(head: EmbeddingHead, train_views, train_labels, config: TrainConfig):
    """Fit the head's whitening part (if any) on training features (N, 2, dim)."""
    if len(head.whitening):
        mean, projection = fit_whitening(train_views.flatten(0, 1), train_labels.repeat_interleave(2),
                                         len(head.whitening), config.whitening)
        head.whitening_mean.copy_(mean)
        head.whitening.copy_(projection)


def _epochs(head, inputs, rows, labels, config: TrainConfig, device, validate):
    """Yield one history entry per epoch; stops early on a validation plateau."""
    n_classes = int(labels.unique().numel())
    m = config.images_per_class
    batch_size = min(config.batch_size, m * n_classes) // m * m  # the sampler needs enough classes
    if batch_size < 2 * m:
        raise LookalikeError(f"{n_classes} training classes are too few for batches of {m} images per class")
    loss_fn, miner = create_loss(config.loss, n_classes, config.projection_dim)
    loss_fn = loss_fn.to(device)
    groups = [{"params": head.projection.parameters()}]
    if head.tail is not None:  # pretrained stages move slower than the fresh projection
        groups.append({"params": head.tail.parameters(), "lr": config.stage_lr})
    if list(loss_fn.parameters()):  # proxies learn faster than the projection
        groups.append({"params": loss_fn.parameters(), "lr": config.lr * 10})
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    sampler = MPerClassSampler(labels.tolist(), m=m, batch_size=batch_size,
                               length_before_new_iter=max(len(labels), batch_size))
    steps = len(sampler) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.epochs * steps)
    amp = device.type == "cuda"  # mixed precision on the GPU
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rows = torch.as_tensor(rows)
    best, stale = -1.0, 0
    progress = tqdm(range(1, config.epochs + 1), desc=f"fine-tune {config.loss}", unit="epoch")
    for epoch in progress:
        # BatchNorm of unfrozen stages keeps its pretrained statistics: batches
        # of 16 classes x 4 images would skew them (eval mode still trains weights)
        head.eval()
        order = torch.tensor(list(iter(sampler)))
        total = 0.0
        for b in tqdm(range(steps), desc=f"epoch {epoch}", unit="batch", leave=False,
                      disable=head.tail is None):
            batch = order[b * batch_size:(b + 1) * batch_size]
            view = torch.randint(0, 2, (len(batch),))  # image or mirror: free augmentation
            y = labels[batch].to(device)
            with torch.autocast("cuda", enabled=amp):
                embeddings = head.project(inputs.batch(rows[batch], view, device))
                loss = loss_fn(embeddings, y, miner(embeddings, y)) if miner else loss_fn(embeddings, y)
            optimiser.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            schedule.step()
            total += loss.item()
        entry = dict(epoch=epoch, loss=round(total / steps, 5), **validate(head))
        progress.set_postfix(loss=entry["loss"], r1=round(entry["recall_at_1"], 3),
                             map_r=round(entry["map_at_r"], 4))
        yield entry
        if entry["map_at_r"] > best:
            best, stale = entry["map_at_r"], 0
        else:
            stale += 1
            if stale >= config.patience:
                progress.write(f"early stop: validation MAP@R has not improved for {stale} epochs")
                return
