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
from .split import Split, class_disjoint_split
from .whitening import fit_whitening


@dataclass
class TrainConfig:
    loss: str = "supcon"            # or "none": whitening only, nothing trained
    epochs: int = 10
    projection_dim: int = 512
    whitening: str = "learned"      # learned | pca | none
    whitening_dim: int = 512
    lr: float = 1e-3
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


def train_head(features: np.ndarray, labels, config: TrainConfig, device=torch.device("cpu"),
               names=None) -> TrainResult:
    """features: (N, 2, dim) backbone views (image, mirror); labels: (N,) ints."""
    if config.epochs < 1 and config.loss != "none":
        raise LookalikeError(f"--epochs must be at least 1, not {config.epochs}")
    seed_everything(config.seed)
    labels = np.asarray(labels)
    split = class_disjoint_split(labels, config.validation_fraction, names)
    views = torch.as_tensor(np.asarray(features, dtype=np.float32))
    train_views, train_labels = views[split.train], torch.as_tensor(labels[split.train])
    validation_views, validation_labels = views[split.validation].numpy(), labels[split.validation]

    def validate(module) -> dict:
        module.eval()
        with torch.no_grad():
            embeddings = embed_views(validation_views, lambda x: module(torch.as_tensor(x)).numpy())
        return retrieval_metrics(embeddings, validation_labels, progress=False)

    started = time.perf_counter()
    result = TrainResult(build_untrained_head(views.shape[2], train_views, train_labels, config), split)
    result.baselines = {
        "pretrained": retrieval_metrics(embed_views(validation_views), validation_labels, progress=False),
        "whitening": validate(build_untrained_head(
            views.shape[2], train_views, train_labels,
            TrainConfig(loss="none", whitening="pca", whitening_dim=config.whitening_dim))),
    }
    head = result.head
    result.untrained = validate(head)
    result.best = dict(result.untrained, epoch=0)
    if config.loss != "none":
        best_state = copy.deepcopy(head.state_dict())
        for entry in _epochs(head, train_views, train_labels, config, device, validate):
            result.history.append(entry)
            if entry["map_at_r"] > result.best["map_at_r"]:
                result.best, best_state = dict(entry), copy.deepcopy(head.state_dict())
        head.load_state_dict(best_state)
    result.head = head.cpu().eval()
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def build_untrained_head(dim, train_views, train_labels, config: TrainConfig) -> EmbeddingHead:
    """A head whose whitening part is fitted (closed form) and whose projection
    is freshly initialised."""
    whitening_dim = 0 if config.whitening == "none" else min(config.whitening_dim, dim)
    projection_dim = 0 if config.loss == "none" else config.projection_dim
    head = EmbeddingHead(dim, projection_dim, whitening_dim)
    if whitening_dim:
        mean, projection = fit_whitening(train_views.flatten(0, 1), train_labels.repeat_interleave(2),
                                         whitening_dim, config.whitening)
        head.whitening_mean.copy_(mean)
        head.whitening.copy_(projection)
    return head


def _epochs(head, views, labels, config: TrainConfig, device, validate):
    """Yield one history entry per epoch; stops early on a validation plateau."""
    n_classes = int(labels.unique().numel())
    m = config.images_per_class
    batch_size = min(config.batch_size, m * n_classes) // m * m  # the sampler needs enough classes
    if batch_size < 2 * m:
        raise LookalikeError(f"{n_classes} training classes are too few for batches of {m} images per class")
    loss_fn, miner = create_loss(config.loss, n_classes, config.projection_dim)
    head, loss_fn = head.to(device), loss_fn.to(device)
    groups = [{"params": head.projection.parameters()}]
    if list(loss_fn.parameters()):  # proxies learn faster than the projection
        groups.append({"params": loss_fn.parameters(), "lr": config.lr * 10})
    optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    sampler = MPerClassSampler(labels.tolist(), m=m, batch_size=batch_size,
                               length_before_new_iter=max(len(labels), batch_size))
    steps = len(sampler) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.epochs * steps)
    best, stale = -1.0, 0
    progress = tqdm(range(1, config.epochs + 1), desc=f"fine-tune {config.loss}", unit="epoch")
    for epoch in progress:
        head.train()
        order = torch.tensor(list(iter(sampler)))
        total = 0.0
        for b in range(steps):
            batch = order[b * batch_size:(b + 1) * batch_size]
            view = torch.randint(0, 2, (len(batch),))  # image or mirror: free augmentation
            x, y = views[batch, view].to(device), labels[batch].to(device)
            embeddings = head.project(x)
            loss = loss_fn(embeddings, y, miner(embeddings, y)) if miner else loss_fn(embeddings, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        entry = dict(epoch=epoch, loss=round(total / steps, 5), **validate(head.cpu()))
        head.to(device)
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
