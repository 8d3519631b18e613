"""The training loop of the real-resolution recipes: batched augmentation, progressive resizing, EMA.

One network is trained on scaled images (N, H, W) in [0, 1] held in memory. Each step augments a batch
(:mod:`tools.classifiers.augment`), optionally downsamples it (the first ``low_res_epochs`` run at
``low_res`` pixels: about a third of the cost per image, and the network, which ends in global
pooling, carries over to the full size), normalises it with the training mean and standard deviation,
and takes one AdamW step on the class-weighted cross-entropy under a one-cycle schedule. An
exponential moving average (EMA) of the weights is what gets evaluated and kept. After every
full-resolution epoch the EMA network is scored on the validation split; the best epoch (validation AUC
for two classes, accuracy for more; then the lower NLL) is returned. The test split is never seen here.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tools.classifiers.augment import AugmentSpec, BatchAugment
from tools.classifiers.bundle import instantiate_network
from tools.classifiers.calibration import roc_auc, softmax


@dataclass(frozen=True)
class FitSpec:
    """Optimisation settings of one network."""

    epochs: int
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    low_res: int | None = None       # pixels per side for the first low_res_epochs (None: always full size)
    low_res_epochs: int = 0
    ema: float = 0.0                 # EMA decay per step; 0 keeps the raw weights
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    tta: tuple[str, ...] = ()


@dataclass
class FitResult:
    state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]]
    seconds: float
    cpu_seconds: float


def val_score(logits: np.ndarray, labels: np.ndarray, positive: int) -> tuple[float, float, float]:
    """(selection key, accuracy, NLL) of validation logits at temperature 1."""
    probs = softmax(logits)
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))
    acc = float((probs.argmax(1) == labels).mean())
    if probs.shape[1] == 2:
        return roc_auc(probs[:, positive], labels == positive), acc, nll
    return acc, acc, nll


def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    with torch.no_grad():
        ema_state = ema.state_dict()
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                ema_state[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                ema_state[k].copy_(v)


def evaluate_logits(net: nn.Module, images: np.ndarray, mean: float, std: float, tta: tuple[str, ...],
                    batch: int = 64) -> np.ndarray:
    """Logits of scaled images (N, H, W) in eval mode, averaged over TTA views ("hflip")."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = (torch.from_numpy(np.ascontiguousarray(images[start:start + batch]))[:, None] - mean) / std
            x = x.contiguous(memory_format=torch.channels_last)
            logits = net(x).float()
            if "hflip" in tta:
                logits = (logits + net(torch.flip(x, dims=[-1])).float()) / 2
            out.append(logits.numpy())
    return np.concatenate(out)


def fit(network_def: dict[str, Any], spec: FitSpec, train_x: np.ndarray, train_y: np.ndarray,
        val_x: np.ndarray, val_y: np.ndarray, mean: float, std: float, n_classes: int, positive: int,
        seed: int, say: Callable[[str], None], tag: str = "") -> FitResult:
    """Train one network; returns the EMA (or raw) state of the best validation epoch."""
    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = instantiate_network(copy.deepcopy(network_def)).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(net) if spec.ema else net
    augment = BatchAugment(spec.augment, seed + 1)
    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    weights = torch.tensor(len(train_y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    batch_size = min(spec.batch_size, len(train_y))  # tiny smoke runs: one batch of everything
    steps_per_epoch = max(1, len(train_y) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=spec.epochs * steps_per_epoch,
                                                pct_start=0.2)
    full = train_x.shape[-1]
    best_key: tuple[float, float] = (-math.inf, 0.0)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, history = 0, []
    for epoch in range(1, spec.epochs + 1):
        net.train()
        size = spec.low_res if spec.low_res and epoch <= spec.low_res_epochs else full
        order = rng.permutation(len(train_y))
        total = 0.0
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * batch_size:(step + 1) * batch_size])
            x = augment(torch.from_numpy(np.ascontiguousarray(train_x[idx]))[:, None])
            if size != full:
                x = F.interpolate(x, size=(size, size), mode="area")
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            y = torch.as_tensor(train_y[idx], dtype=torch.long)
            loss = F.cross_entropy(net(x), y, weight=weights, label_smoothing=spec.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if spec.ema:
                _ema_update(ema, net, spec.ema if epoch > 1 else min(spec.ema, (1 + step) / (10 + step)))
            total += loss.item() * len(idx)
        row: dict[str, float] = {"epoch": epoch, "size": size,
                                 "train_loss": round(total / (steps_per_epoch * batch_size), 4)}
        if size == full:
            logits = evaluate_logits(ema, val_x, mean, std, spec.tta)
            key, acc, nll = val_score(logits, val_y, positive)
            row.update(val_key=round(key, 4), val_acc=round(acc, 4), val_nll=round(nll, 4))
            if (key, -nll) > best_key:
                best_key, best_epoch = (key, -nll), epoch
                best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
        row["seconds"] = round(time.time() - t0, 1)
        history.append(row)
        say(f"{tag} epoch {epoch}/{spec.epochs} " + " ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"))
    if not best_state:  # every epoch ran at low resolution: keep the last
        best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
        best_epoch = spec.epochs
    return FitResult(best_state, best_epoch, history, time.time() - t0, time.process_time() - c0)
