"""The training loop of the real-resolution recipes: batched augmentation, MixUp/CutMix, progressive
resizing, warm-up and cosine decay, EMA of the weights, snapshots, and a schedule fitted to a time budget.

One network is trained on scaled images (N, H, W) in [0, 1] held in memory. Each step augments a batch
(:mod:`tools.classifiers.augment`), mixes part of the batches (MixUp or CutMix: the loss is the same mix
of the two labels' class-weighted cross-entropies), optionally downsamples it (the first
``low_res_share`` of the epochs run at ``low_res`` pixels: about a third of the cost per image; the
network ends in global pooling, so it carries over to the full size), normalises it with the training
mean and standard deviation, and takes one AdamW step. The learning rate rises linearly over the first
``warmup_share`` of the steps, then follows a cosine down to ``final_lr_share`` of its peak, once or in
``cycles`` restarts (each cycle ends in a snapshot of the EMA weights). The exponential moving average
(EMA) of the weights, with decay min(ema, (1 + n) / (10 + n)) at step n, is what gets evaluated and kept.

After every full-resolution epoch the EMA network is scored on the validation split (with the recipe's
TTA). What is returned is chosen on validation only (AUC for two classes, accuracy for more; then the
lower NLL): the best epoch, or the mean of the last k snapshots when that scores better and k networks
fit the bundle's weight limit. The test split is never seen here.

A time budget (:func:`probe`, :func:`epochs_for_budget`) turns minutes into a number of epochs before
training starts, from a short timing probe on the same data and threads; the card records the epochs, so ``--epochs N``
reproduces the run exactly.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tools.classifiers.augment import AugmentSpec, BatchAugment
from tools.classifiers.bundle import instantiate_network
from tools.classifiers.calibration import roc_auc, softmax
from tools.classifiers.runtime import tta_views
from tools.errors import InputError

MIXES = ("none", "mixup", "cutmix")


@dataclass(frozen=True)
class FitSpec:
    """Optimisation settings of one network."""

    epochs: int
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    low_res: int | None = None       # pixels per side for the first low_res_share of the epochs (None: full size)
    low_res_share: float = 0.0
    ema: float = 0.0                 # EMA decay per step; 0 keeps the raw weights
    warmup_share: float = 0.05       # of all steps: linear warm-up from lr / 25
    final_lr_share: float = 0.01     # the cosine ends at lr * final_lr_share
    cycles: int = 1                  # cosine cycles; >1: a snapshot at the end of each (snapshot ensemble)
    mix: str = "none"                # "mixup" | "cutmix" | "none"
    mix_alpha: float = 0.2           # Beta(alpha, alpha) mixing weight
    mix_prob: float = 0.5            # share of the batches mixed
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    tta: tuple[str, ...] = ()        # TTA views for validation (runtime.tta_views)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.cycles < 1 or self.epochs < self.cycles:
            raise InputError(f"need epochs >= cycles >= 1; got {self.epochs} epochs, {self.cycles} cycles")
        if self.mix not in MIXES:
            raise InputError(f"unknown mix {self.mix!r}; use {', '.join(MIXES)}")
        if not (0.0 <= self.low_res_share < 1.0 and 0.0 <= self.warmup_share < 0.5 and 0.0 <= self.mix_prob <= 1.0):
            raise InputError("low_res_share must lie in [0, 1), warmup_share in [0, 0.5), mix_prob in [0, 1]")

    @property
    def low_res_epochs(self) -> int:
        """The first epochs at low resolution (always leaving at least one full-resolution epoch)."""
        if not self.low_res:
            return 0
        return min(int(round(self.epochs * self.low_res_share)), self.epochs - 1)

    def describe(self) -> str:
        parts = [f"AdamW lr {self.lr:g} wd {self.weight_decay:g}, batch {self.batch_size}, "
                 f"linear warm-up {self.warmup_share:.0%} of the steps then cosine to {self.final_lr_share:g} x lr"
                 + (f" in {self.cycles} cycles (a snapshot at the end of each)" if self.cycles > 1 else "")]
        if self.ema:
            parts.append(f"EMA {self.ema:g} (from (1 + n) / (10 + n) at step n)")
        if self.mix != "none":
            parts.append(f"{'MixUp' if self.mix == 'mixup' else 'CutMix'} alpha {self.mix_alpha:g} on "
                         f"{self.mix_prob:.0%} of the batches")
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        return "; ".join(parts)


@dataclass
class FitResult:
    """``states``: one network, or the snapshot ensemble's members; ``choice`` says which was kept and why."""

    states: list[dict[str, torch.Tensor]]
    best_epoch: int
    history: list[dict[str, float]]
    seconds: float
    cpu_seconds: float
    choice: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> dict[str, torch.Tensor]:
        return self.states[0]


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
    """Logits of scaled images (N, H, W) in eval mode, averaged over the TTA views (as at inference)."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = (torch.from_numpy(np.ascontiguousarray(images[start:start + batch]))[:, None] - mean) / std
            views = tta_views(x.contiguous(memory_format=torch.channels_last), list(tta))
            out.append((sum(net(v).float() for v in views) / len(views)).numpy())
    return np.concatenate(out)


def lr_factor(step: int, total: int, spec: FitSpec) -> float:
    """The learning rate at ``step`` of ``total`` as a share of the peak: warm-up, then cosine per cycle."""
    warm = int(total * spec.warmup_share)
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    cycle = max(1, total // spec.cycles)
    k = min(step // cycle, spec.cycles - 1)
    start = max(k * cycle, warm)
    end = total if k == spec.cycles - 1 else (k + 1) * cycle
    t = (step - start) / max(1, end - start)
    return spec.final_lr_share + (1 - spec.final_lr_share) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


class Mixer:
    """MixUp / CutMix of a batch: (mixed x, the partner's index, the first label's weight)."""

    def __init__(self, spec: FitSpec, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        s = self.spec
        if s.mix == "none" or self.rng.random() >= s.mix_prob or x.shape[0] < 2:
            return x, None, 1.0
        lam = float(self.rng.beta(s.mix_alpha, s.mix_alpha))
        perm = torch.as_tensor(self.rng.permutation(x.shape[0]))
        if s.mix == "mixup":
            return lam * x + (1 - lam) * x[perm], perm, lam
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        return out, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w)


def _step_time(net: nn.Module, spec: FitSpec, images: np.ndarray, labels: np.ndarray, size: int, mean: float,
               std: float, seed: int, steps: int) -> float:
    """Seconds per optimisation step at ``size`` pixels (median of ``steps`` after one warm-up step)."""
    net = copy.deepcopy(net).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-6)
    augment, rng = BatchAugment(spec.augment, seed), np.random.default_rng(seed)
    mixer = Mixer(spec, rng)
    batch = min(spec.batch_size, len(labels))
    times = []
    for k in range(steps + 1):
        t = time.perf_counter()
        idx = np.sort(rng.choice(len(labels), batch, replace=False))
        x = augment(torch.from_numpy(np.ascontiguousarray(images[idx]))[:, None])
        if size != images.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="area")
        x, _, _ = mixer(x)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(net(x), torch.as_tensor(labels[idx], dtype=torch.long))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


@dataclass(frozen=True)
class StepTimes:
    """Seconds per optimisation step (low and full resolution) and per validation image, measured here."""

    per_step_low: float
    per_step_full: float
    per_val_image: float


def probe(network_def: dict[str, Any], spec: FitSpec, train_x: np.ndarray, train_y: np.ndarray, mean: float,
          std: float, seed: int, steps: int = 6) -> StepTimes:
    """Time a few training steps at both resolutions and one validation batch, on a throwaway network, with
    the current thread count (the real run starts afresh from ``seed``)."""
    net = instantiate_network(copy.deepcopy(network_def)).to(memory_format=torch.channels_last)
    full = train_x.shape[-1]
    s_full = _step_time(net, spec, train_x, train_y, full, mean, std, seed, steps)
    s_low = _step_time(net, spec, train_x, train_y, spec.low_res, mean, std, seed, steps) if spec.low_res else s_full
    sample = train_x[: min(64, len(train_x))]
    t = time.perf_counter()
    evaluate_logits(net, sample, mean, std, spec.tta)
    return StepTimes(s_low, s_full, (time.perf_counter() - t) / len(sample))


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget became epochs: the probe's timings and the estimate of the run."""

    epochs: int
    seconds_per_step_low: float
    seconds_per_step_full: float
    seconds_per_val_image: float
    estimated_train_seconds: float
    train_budget_seconds: float

    def to_json(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def epochs_for_budget(spec: FitSpec, times: StepTimes, n_train: int, n_val: int, budget_s: float) -> BudgetPlan:
    """The number of epochs (whole cycles, at least one cycle) whose estimated time fits ``budget_s``."""
    if budget_s <= 0:
        raise InputError("no time is left for training in the budget; give more minutes")
    steps = max(1, n_train // min(spec.batch_size, n_train))
    low_share = spec.low_res_share if spec.low_res else 0.0
    per_epoch = (low_share * steps * times.per_step_low
                 + (1 - low_share) * (steps * times.per_step_full + n_val * times.per_val_image))
    epochs = int(budget_s // per_epoch)
    epochs = max(spec.cycles, epochs - epochs % spec.cycles)
    return BudgetPlan(epochs, times.per_step_low, times.per_step_full, times.per_val_image, epochs * per_epoch,
                      budget_s)


def fit(network_def: dict[str, Any], spec: FitSpec, train_x: np.ndarray, train_y: np.ndarray,
        val_x: np.ndarray, val_y: np.ndarray, mean: float, std: float, n_classes: int, positive: int,
        seed: int, say: Callable[[str], None], tag: str = "", max_members: int = 1) -> FitResult:
    """Train one network; returns the EMA (or raw) weights chosen on validation (see the module docstring)."""
    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = instantiate_network(copy.deepcopy(network_def)).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(net) if spec.ema else net
    augment = BatchAugment(spec.augment, seed + 1)
    mixer = Mixer(spec, np.random.default_rng(seed + 2))
    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    weights = torch.tensor(len(train_y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    batch_size = min(spec.batch_size, len(train_y))  # tiny smoke runs: one batch of everything
    steps_per_epoch = max(1, len(train_y) // batch_size)
    total = spec.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, spec))
    cycle_epochs = spec.epochs // spec.cycles
    full = train_x.shape[-1]
    best_key: tuple[float, float] = (-math.inf, 0.0)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, history = 0, []
    snapshots: list[tuple[int, dict[str, torch.Tensor], np.ndarray]] = []

    def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=weights, label_smoothing=spec.label_smoothing)

    for epoch in range(1, spec.epochs + 1):
        net.train()
        size = spec.low_res if spec.low_res and epoch <= spec.low_res_epochs else full
        order = rng.permutation(len(train_y))
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * batch_size:(step + 1) * batch_size])
            x = augment(torch.from_numpy(np.ascontiguousarray(train_x[idx]))[:, None])
            if size != full:
                x = F.interpolate(x, size=(size, size), mode="area")
            x, perm, lam = mixer(x)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            y = torch.as_tensor(train_y[idx], dtype=torch.long)
            logits = net(x)
            loss = loss_of(logits, y) if perm is None else lam * loss_of(logits, y) + (1 - lam) * loss_of(logits, y[perm])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if spec.ema:  # the decay warms up with the step count, so that short runs average recent weights
                done = (epoch - 1) * steps_per_epoch + step
                _ema_update(ema, net, min(spec.ema, (1 + done) / (10 + done)))
            total_loss += loss.item() * len(idx)
        row: dict[str, float] = {"epoch": epoch, "size": size, "lr": round(opt.param_groups[0]["lr"], 6),
                                 "train_loss": round(total_loss / (steps_per_epoch * batch_size), 4)}
        if size == full:
            logits_val = evaluate_logits(ema, val_x, mean, std, spec.tta)
            key, acc, nll = val_score(logits_val, val_y, positive)
            row.update(val_key=round(key, 4), val_acc=round(acc, 4), val_nll=round(nll, 4))
            if (key, -nll) > best_key:
                best_key, best_epoch = (key, -nll), epoch
                best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
            if spec.cycles > 1 and epoch % cycle_epochs == 0:
                snapshots.append((epoch, {k: v.detach().clone() for k, v in ema.state_dict().items()}, logits_val))
        row["seconds"] = round(time.time() - t0, 1)
        history.append(row)
        say(f"{tag} epoch {epoch}/{spec.epochs} " + " ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"))
    if not best_state:  # every epoch ran at low resolution: keep the last
        best_state = {k: v.detach().clone() for k, v in ema.state_dict().items()}
        best_epoch = spec.epochs
    states, choice = [best_state], {"kept": f"epoch {best_epoch}", "val_key": round(best_key[0], 4),
                                    "val_nll": round(-best_key[1], 4)}
    candidates = [dict(choice)]
    for k in range(2, min(len(snapshots), max_members) + 1):  # the last k snapshots, averaged
        members = snapshots[-k:]
        key, _, nll = val_score(np.mean([m[2] for m in members], axis=0), val_y, positive)
        row_c = {"kept": "snapshots of epochs " + ", ".join(str(m[0]) for m in members), "val_key": round(key, 4),
                 "val_nll": round(nll, 4)}
        candidates.append(row_c)
        if (key, -nll) > best_key:
            best_key, states, choice = (key, -nll), [m[1] for m in members], row_c
    choice = {**choice, "candidates": candidates} if len(candidates) > 1 else choice
    return FitResult(states, best_epoch, history, time.time() - t0, time.process_time() - c0, choice)


def with_epochs(spec: FitSpec, epochs: int) -> FitSpec:
    """``spec`` with another number of epochs: whole cycles, fewer cycles when the epochs are fewer."""
    cycles = max(1, min(spec.cycles, epochs))
    return replace(spec, epochs=max(cycles, epochs - epochs % cycles), cycles=cycles)
