"""The shared training core: ``train(config, data, callbacks) -> Result``.

Three parts: :func:`build_components` (model, optimizer, schedule, scaler, augmenter, split
tensors: also what :mod:`cifar_hpo.lr_find` and the benchmarks build runs from),
:func:`train_epoch` (one epoch of steps) and :func:`evaluate` (metrics on a split), which
:func:`train` drives with the callbacks.

No globals, prints or file I/O: everything a run needs is in its :class:`TrainConfig` and
:class:`CifarData`; progress bars, checkpoints, pruning and tracking plug in as callbacks.
The loop follows airbench: the whole (split) dataset stays in memory as uint8, each epoch is a
seeded permutation, and augmentation runs on whole batches before the float conversion.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifar_hpo.augment import build_augmenter
from cifar_hpo.callbacks import Callback, EarlyStopping
from cifar_hpo.config import TrainConfig
from cifar_hpo.data import CifarData, stratified_split, subset_per_class
from cifar_hpo.device import (
    InputTransform,
    amp_enabled,
    autocast,
    make_grad_scaler,
    resolve_device,
)
from cifar_hpo.errors import ConfigError
from cifar_hpo.lookahead import Lookahead
from cifar_hpo.metrics import EvalReport, compute_metrics, predict_logits
from cifar_hpo.models import count_parameters, create_model
from cifar_hpo.models.hooks import DataDependentInit, EpochAware
from cifar_hpo.optim import LRSchedule, build_optimizer, total_steps
from cifar_hpo.run_state import (  # noqa: F401 (re-exported: the engine's public types)
    COMPLETED,
    DIVERGED,
    EARLY_STOPPED,
    STOPPED,
    Result,
    Splits,
    TrainState,
    TrainStatus,
)

#: Under a gradient scaler (fp16 on CUDA, bf16 on CPU) a step with a non-finite loss or
#: gradients is skipped and the weights stay finite; the run is called diverged only when more
#: than this many checked losses in a row are non-finite. Without a scaler (fp32) the first
#: non-finite loss stops the run.
MAX_SKIPPED_STEPS_IN_A_ROW = 3


def make_splits(config: TrainConfig, data: CifarData) -> Splits:
    """Stratified validation hold-out, then the training subset for small budgets."""
    train_idx, val_idx = stratified_split(
        data.train_labels, config.data.val_fraction, config.data.split_seed
    )
    if config.data.train_fraction < 1.0:
        keep = subset_per_class(
            data.train_labels[train_idx], config.data.train_fraction, config.data.split_seed
        )
        train_idx = train_idx[keep]
    return Splits(train_idx=train_idx, val_idx=val_idx)


@dataclass
class Components:
    """Everything a run is built from, made once by :func:`build_components` (shared by
    :func:`train`, :func:`cifar_hpo.lr_find.lr_range_test` and the benchmarks).

    Attributes:
        device, use_amp: where and in which precision the run computes.
        splits: training/validation index arrays into ``data.train_images``.
        model: on ``device``, in the config's memory format, data-dependent init done.
        num_params: trainable parameters.
        train_images, val_images: uint8 (N, 32, 32, 3) CPU tensors; ``*_labels`` int64 (N,).
        batch_size: training batch (at most the training split); ``steps_per_epoch`` full
            batches per epoch.
        to_input: uint8 NHWC batch -> normalized float (B, 3, 32, 32) on ``device``.
        optimizer, schedule, scaler: the optimizer, its LR schedule and the gradient scaler.
        generator: the CPU generator of shuffling and augmentation (seeded by ``config.seed``).
        augment: the batch augmenter; ``take_batch(idx, generator)`` -> augmented uint8 batch.
    """

    device: torch.device
    use_amp: bool
    splits: Splits
    model: nn.Module
    num_params: int
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    batch_size: int
    steps_per_epoch: int
    to_input: InputTransform
    optimizer: Any
    schedule: LRSchedule
    scaler: Any
    generator: torch.Generator
    augment: Any
    take_batch: Any


def build_components(config: TrainConfig, data: CifarData) -> Components:
    """Build a run's model (seeded by ``config.seed``, data-dependent init on a fixed random
    sample of the training split drawn with ``data.split_seed``), optimizer, LR schedule,
    scaler, augmenter and the split tensors.

    Raises:
        ValueError: an empty training split.
    """
    device = resolve_device(config.device)
    use_amp = amp_enabled(device, config.amp)
    splits = make_splits(config, data)
    if len(splits.train_idx) == 0:
        raise ConfigError("the training split is empty; lower data.val_fraction or add images")
    torch.manual_seed(config.seed)
    model = create_model(config.model.name, data.num_classes, **config.model.hparams)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    num_params = count_parameters(model)
    train_images = torch.from_numpy(data.train_images[splits.train_idx])
    n = train_images.shape[0]
    batch_size = min(config.batch_size, n)
    to_input = InputTransform(data.mean, data.std, device, config.channels_last)
    if isinstance(model, DataDependentInit):
        # a fixed random sample, not the first images: cached splits can be sorted by class
        # (ImageFolder copies), while upstream's "first 5,000" of CIFAR-10 are a random mix
        order = torch.Generator().manual_seed(config.data.split_seed)
        pick = torch.randperm(n, generator=order)[: model.init_images]
        model.init_from_data(to_input(train_images.index_select(0, pick)))
    optimizer = build_optimizer(model, config.optim, batch_size)
    steps_per_epoch = n // batch_size
    augment = build_augmenter(
        config.augment.policy, config.augment.strength, data.mean, config.seed
    )
    return Components(
        device=device,
        use_amp=use_amp,
        splits=splits,
        model=model,
        num_params=num_params,
        train_images=train_images,
        train_labels=torch.from_numpy(data.train_labels[splits.train_idx]).long(),
        val_images=torch.from_numpy(data.train_images[splits.val_idx]),
        val_labels=torch.from_numpy(data.train_labels[splits.val_idx]).long(),
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        to_input=to_input,
        optimizer=optimizer,
        schedule=LRSchedule(optimizer, config.schedule, config.epochs, steps_per_epoch),
        scaler=make_grad_scaler(device, use_amp),
        generator=torch.Generator().manual_seed(config.seed),
        augment=augment,
        take_batch=augment.bind(train_images),
    )


def evaluate(
    c: Components, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, class_names
) -> EvalReport:
    """Metrics of ``c.model`` on uint8 ``images`` (N, 32, 32, 3) with the config's TTA level."""
    logits = predict_logits(
        c.model, images, c.to_input, config.eval_batch_size, config.tta, c.use_amp
    )
    return compute_metrics(logits, labels, class_names)


@dataclass
class EpochTrained:
    """What :func:`train_epoch` did: images processed, seconds, summed loss and hits over the
    steps with a finite loss, and where it diverged (step index) if it did."""

    images: int
    seconds: float
    loss_sum: float
    correct: int
    counted: int
    diverged_at: int | None


def train_epoch(state: TrainState, c: Components, callbacks: Sequence[Callback]) -> EpochTrained:
    """One epoch of training (at most the steps left in the run): shuffle, augment, forward
    under autocast, backward through the scaler, step, LR schedule, lookahead; calls each
    callback's ``on_batch_end``. A non-finite loss is checked every step on CPU (every 25th on
    GPU); more than ``MAX_SKIPPED_STEPS_IN_A_ROW`` in a row under a scaler (at once without
    one) stops the epoch as diverged."""
    config, model, device = state.config, c.model, c.device
    label_smoothing = config.optim.label_smoothing
    n = c.train_images.shape[0]
    c.augment.set_epoch(state.epoch)
    if isinstance(model, EpochAware):
        model.set_epoch(state.epoch)
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=c.generator)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    counted = torch.zeros((), device=device, dtype=torch.long)  # images of finite steps
    diverged, nonfinite_in_a_row = False, 0
    bs = c.batch_size
    step = -1
    for step in range(min(c.steps_per_epoch, state.total_steps - state.step)):
        idx = perm[step * bs : (step + 1) * bs]
        x = c.to_input(c.take_batch(idx, c.generator))
        y = c.train_labels.index_select(0, idx).to(device, non_blocking=True)
        with autocast(device, c.use_amp):
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        c.optimizer.zero_grad(set_to_none=True)
        c.scaler.scale(loss).backward()
        if config.optim.grad_clip > 0:
            c.scaler.unscale_(c.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        c.scaler.step(c.optimizer)
        c.scaler.update()
        c.schedule.step_batch()
        state.step += 1
        if state.lookahead is not None:
            state.lookahead.after_step(model, state.step)
        loss_value = loss.detach().float()
        hits = (logits.detach().argmax(1) == y).sum()
        if c.scaler.is_enabled():  # a non-finite step was skipped: leave it out of the sums
            finite = torch.isfinite(loss_value)
            loss_value = torch.where(finite, loss_value, 0.0)
            hits, batch_images = hits * finite, finite * y.shape[0]
        else:
            batch_images = y.shape[0]
        loss_sum += loss_value * y.shape[0]
        correct += hits
        counted += batch_images
        batch_loss = None
        if device.type == "cpu" or step % 25 == 24:
            batch_loss = float(loss.detach())
            nonfinite_in_a_row = 0 if math.isfinite(batch_loss) else nonfinite_in_a_row + 1
            limit = MAX_SKIPPED_STEPS_IN_A_ROW if c.scaler.is_enabled() else 0
            diverged = nonfinite_in_a_row > limit
        for cb in callbacks:
            cb.on_batch_end(state, step + 1, batch_loss)
        if diverged:
            break
    return EpochTrained(
        images=(step + 1) * bs,
        seconds=time.perf_counter() - t0,
        loss_sum=float(loss_sum),
        correct=int(correct),
        counted=int(counted),
        diverged_at=step + 1 if diverged else None,
    )


def train(
    config: TrainConfig,
    data: CifarData,
    callbacks: Sequence[Callback] = (),
    *,
    resume: dict[str, Any] | None = None,
    evaluate_test: bool = True,
) -> Result:
    """Train ``config.model`` on ``data`` for ``config.epochs`` epochs (fractions allowed: the
    run takes ``ceil(epochs * steps_per_epoch)`` optimizer steps, the last epoch cut short).

    Before the first step, a model with ``init_from_data`` (see
    :mod:`cifar_hpo.models.hooks`) gets ``init_images`` training images, normalized, drawn once
    from the training split with ``data.split_seed`` (the same for every run seed);
    a model with ``set_epoch`` is told each epoch before it trains.

    Each history row holds: ``epoch`` (1-based), ``lr`` (at the last step of the epoch),
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``val_top5``, ``val_f1_macro``,
    ``epoch_seconds`` (training + validation, seconds), ``images_per_sec`` (training images per
    second of training time) and ``images_seen`` (cumulative).

    Args:
        config: resolved configuration; ``config.seed`` seeds init, shuffling and augmentation.
        data: the dataset (uint8 images (N, 32, 32, 3), int64 labels).
        callbacks: hooks called in order (see :class:`cifar_hpo.callbacks.Callback`).
        resume: a checkpoint dict from :func:`cifar_hpo.checkpoint.load_checkpoint`; training
            continues after its last completed epoch and ends with the same history as an
            uninterrupted run (on CPU).
        evaluate_test: score the test split at the end (never used for selection).

    Returns:
        A :class:`Result`. A non-finite loss ends the run with status ``diverged``: at once in
        fp32; under autocast, whose gradient scaler skips such steps, after more than
        ``MAX_SKIPPED_STEPS_IN_A_ROW`` of them in a row.

    Raises:
        ValueError: the config does not fit the data (e.g. an empty training split) or the
            checkpoint belongs to another config.
    """
    t_start = time.perf_counter()
    c = build_components(config, data)
    has_val = len(c.splits.val_idx) > 0
    state, callbacks = _start_state(config, c, callbacks, resume, has_val)

    status, message = COMPLETED, ""
    val_report: EvalReport | None = None
    while state.step < state.total_steps and state.stop_status is None:
        diverged, report = _train_and_validate(state, c, callbacks, data.class_names, has_val)
        if diverged:
            status, message = DIVERGED, diverged
            break
        if report is not None:
            val_report = report

    if status == COMPLETED and state.stop_status is not None:
        status, message = state.stop_status, state.stop_message
    if status == EARLY_STOPPED and state.early_stopping and state.early_stopping.best_weights:
        c.model.load_state_dict(state.early_stopping.best_weights)

    test_report = None
    if status != DIVERGED:
        # early stopping restored the best weights: the last epoch's report is not theirs
        if has_val and (val_report is None or status == EARLY_STOPPED):
            val_report = evaluate(c, config, c.val_images, c.val_labels, data.class_names)
        if evaluate_test and len(data.test_labels):
            test_images = torch.from_numpy(data.test_images)
            test_labels = torch.from_numpy(data.test_labels).long()
            test_report = evaluate(c, config, test_images, test_labels, data.class_names)
    c.model.eval()
    result = Result(
        status=status,
        message=message,
        history=state.history,
        model=c.model,
        val=val_report,
        test=test_report,
        seconds=time.perf_counter() - t_start,
        images_seen=state.images_seen,
        num_params=c.num_params,
        config=config,
        class_names=data.class_names,
    )
    for cb in callbacks:
        cb.on_train_end(state, result)
    return result


def _start_state(
    config: TrainConfig,
    c: Components,
    callbacks: Sequence[Callback],
    resume: dict[str, Any] | None,
    has_val: bool,
) -> tuple[TrainState, list[Callback]]:
    """The run's state (lookahead, early stopping, a checkpoint restored) and its callbacks
    (early stopping first), after each callback's ``on_train_start``."""
    state = TrainState(config, c.model, c.optimizer, c.schedule, c.scaler, c.generator)
    state.steps_per_epoch, state.num_train = c.steps_per_epoch, c.train_images.shape[0]
    state.num_val = len(c.splits.val_idx)
    state.total_steps = total_steps(config.epochs, c.steps_per_epoch)
    if config.optim.lookahead_steps:
        state.lookahead = Lookahead(
            c.model, config.optim.lookahead_steps, state.total_steps, config.optim.lookahead_decay
        )
    callbacks = list(callbacks)
    if config.early_stopping.patience > 0 and has_val:
        es = config.early_stopping
        state.early_stopping = EarlyStopping(es.patience, es.metric, es.min_delta)
        callbacks.insert(0, state.early_stopping)
    if resume is not None:
        _restore(state, resume)
    for cb in callbacks:
        cb.on_train_start(state)
    return state, callbacks


def _train_and_validate(
    state: TrainState,
    c: Components,
    callbacks: Sequence[Callback],
    class_names: Sequence[str],
    has_val: bool,
) -> tuple[str, EvalReport | None]:
    """One epoch: train, validate, step the epoch schedule, append the history row, call each
    callback's ``on_epoch_end``.

    Returns:
        (why the run diverged, ``""`` if it did not; the validation report or None). A
        diverged epoch gets a row with a NaN training loss and no callbacks.
    """
    config, schedule = state.config, c.schedule
    epoch, t0 = state.epoch, time.perf_counter()
    done = train_epoch(state, c, callbacks)
    state.images_seen += done.images
    train_loss = done.loss_sum / done.counted if done.counted else float("nan")
    if done.diverged_at is not None or not math.isfinite(train_loss):
        state.epoch += 1
        state.history.append(
            {
                "epoch": epoch + 1,
                "lr": schedule.lr,
                "train_loss": float("nan"),
                "images_seen": state.images_seen,
            }
        )
        step = done.diverged_at or c.steps_per_epoch
        return f"non-finite training loss at epoch {epoch + 1}, step {step}; stopped", None
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": schedule.lr,
        "train_loss": train_loss,
        "train_acc": done.correct / done.counted,
    }
    val_report = None
    if has_val:
        val_report = evaluate(c, config, c.val_images, c.val_labels, class_names)
        record.update(
            val_loss=val_report.metrics["loss"],
            val_acc=val_report.metrics["acc"],
            val_top5=val_report.metrics["top5"],
            val_f1_macro=val_report.metrics["f1_macro"],
        )
    schedule.step_epoch(record.get("val_loss", train_loss))
    record["epoch_seconds"] = time.perf_counter() - t0
    record["images_per_sec"] = done.images / done.seconds
    record["images_seen"] = state.images_seen
    state.epoch += 1
    state.history.append(record)
    for cb in callbacks:
        cb.on_epoch_end(state, record)
    return "", val_report


def _restore(state: TrainState, ckpt: dict[str, Any]) -> None:
    saved = TrainConfig.from_dict(ckpt["config"])
    if saved != state.config:
        diff = sorted(k for k, v in state.config.to_flat().items() if saved.to_flat().get(k) != v)
        raise ConfigError(
            f"checkpoint was written with a different config (differs in: {', '.join(diff)})"
        )
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.schedule.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"] or not state.scaler.is_enabled():  # empty: saved by a disabled scaler
        state.scaler.load_state_dict(ckpt["scaler"])
    state.generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    state.epoch = int(ckpt["epoch"])
    state.step = int(ckpt.get("step", state.epoch * state.steps_per_epoch))
    if state.lookahead is not None and ckpt.get("lookahead"):
        state.lookahead.load_state_dict(ckpt["lookahead"])
    state.history = copy.deepcopy(list(ckpt["history"]))
    state.images_seen = int(ckpt["images_seen"])
    if state.early_stopping is not None and ckpt.get("early_stopping"):
        state.early_stopping.load_state_dict(ckpt["early_stopping"])
