"""The training loop of every :class:`~fastmc.models.base.GenerativeModel`.

:func:`train_model` is model-agnostic: Adam on :meth:`GenerativeModel.training_loss`, the
validation loss after every epoch, early stopping on it, and after every epoch the files of
the model directory (written by :class:`fastmc.models.modeldir.ModelDir`, atomically):

``weights.safetensors``     the best weights so far (lowest validation loss): what
                            ``fastmc generate`` uses
``checkpoint.*``            the latest weights and Adam state, epoch and counters (``--resume``)
``history.json``            one record per epoch: losses and their parts, seconds, lr
``config.json``             model and training settings, fastmc version, data provenance

The learning rate follows ``TrainConfig.lr_schedule`` batch by batch; with ``TrainConfig.ema``
an exponential moving average of the weights (:mod:`fastmc.workflows.schedule`) is what is
validated and kept as the best weights (the checkpoint holds both, so resume is exact).

A NaN or infinite loss stops training with :class:`TrainingDivergedError`; the files of the
last good epoch are left untouched.  The same seed gives the same weights: the initial
weights come from ``seed``, and each epoch's batches and noise from (``seed``, epoch), so a
resumed run continues exactly as an uninterrupted one would.

The data side (an event store, the balanced loader, the ``val`` split) is
:func:`fastmc.workflows.train_store.train_from_store`.

Under ``torchrun`` (several ranks, :mod:`fastmc.workflows.distributed`) the same loop runs on
every rank with the model in DistributedDataParallel; loss values and validation sums are
summed over the ranks, so all take the same decisions, and rank 0 alone writes the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from fastmc.config import derive_seed
from fastmc.data.batch import RawBatch
from fastmc.devices import resolve_device
from fastmc.errors import ConfigError
from fastmc.models.base import GenerativeModel
from fastmc.models.modeldir import ModelDir
from fastmc.workflows import accel, distributed
from fastmc.workflows.schedule import WeightAverage, learning_rate
from fastmc.workflows.train_config import TrainConfig, TrainingDivergedError, TrainResult

__all__ = ["TrainConfig", "TrainResult", "TrainingDivergedError", "epoch_seed", "train_model"]


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """Seed of stream ``stream`` (1: training noise, 2: validation noise) of ``epoch``
    (:func:`fastmc.config.derive_seed`)."""
    return derive_seed(seed, "epoch", epoch, stream)


@dataclasses.dataclass
class _Progress:
    """Where training stands: the epochs done and the early-stopping counters."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad: int = 0

    def status(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "best_val_loss": self.best_val,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad, "history": self.history}


class _ReadOnly:
    """A ModelDir whose ``write_*`` methods do nothing: what ranks other than 0 hold."""

    def __init__(self, mdir: ModelDir) -> None:
        self._mdir = mdir

    def __getattr__(self, name: str) -> Any:
        if name.startswith("write_"):
            return lambda *args, **kwargs: None
        return getattr(self._mdir, name)


def _resume(mdir: ModelDir, model: GenerativeModel, opt: torch.optim.Optimizer,
            device: torch.device, average: WeightAverage | None) -> _Progress:
    status = mdir.read_checkpoint(model, opt, device)
    if average is not None:
        stored = mdir.read_checkpoint_average(device)
        if not stored:
            raise ConfigError(
                f"{mdir.path}: the stored run has no weight average; resume it without ema"
            )
        average.load_state_tensors(stored)
    return _Progress(history=list(status["history"]), epoch=int(status["epoch"]),
                     best_val=float(status["best_val_loss"]),
                     best_epoch=int(status["best_epoch"]), bad=int(status["bad_epochs"]))


def _train_epoch(
    model: GenerativeModel,
    opt: torch.optim.Optimizer,
    batches: Iterable[RawBatch],
    gen: torch.Generator,
    device: torch.device,
    epoch: int,
    mdir: ModelDir,
    progress: Callable[[int], None] | None,
    loss_fn: accel.LossFn | None = None,
    precision: str = "fp32",
    lr_of_step: Callable[[int], float] | None = None,
    average: WeightAverage | None = None,
) -> tuple[float, dict[str, float], int]:
    """One pass of Adam over ``batches``: mean loss, mean parts, events seen (all ranks).

    ``lr_of_step(step)`` sets the learning rate of each batch; ``average`` is updated after
    every optimizer step."""
    total, n, parts = 0.0, 0, {}
    loss_fn = loss_fn or (lambda raw, g: model.training_loss(raw, generator=g))
    world = distributed.context().world_size
    for step, raw in enumerate(batches, start=1):
        raw = accel.move_batch(raw, device)
        with accel.precision(precision, device):
            loss, p = loss_fn(raw, gen)
        b, keys = len(raw), sorted(p)
        sums = distributed.all_sum([float(loss.detach()) * b, b, *(p[k] * b for k in keys)])
        value = sums[0] / sums[1]
        if not math.isfinite(value):
            last = (f"the last good checkpoint (epoch {epoch - 1}) is kept in {mdir.path}"
                    if epoch > 1 else "no checkpoint was written")
            raise TrainingDivergedError(
                f"training loss became {value} at epoch {epoch}, batch {step}; {last}. "
                "Try a lower --lr, a smaller --beta, or standardize: true in model_config."
            )
        opt.zero_grad(set_to_none=True)
        if lr_of_step is not None:
            for group in opt.param_groups:
                group["lr"] = lr_of_step(step)
        # DDP averages the ranks' gradients: weigh each rank by its share of the step's events
        (loss * (world * b / sums[1]) if world > 1 else loss).backward()
        opt.step()
        if average is not None:
            average.update(model)
        total += sums[0]
        n += int(sums[1])
        for k, v in zip(keys, sums[2:], strict=True):
            parts[k] = parts.get(k, 0.0) + v
        if progress is not None:
            progress(1)
    if n == 0:
        raise ConfigError("the training loader yielded no events")
    return total / n, {k: v / n for k, v in parts.items()}, n


def _validate(
    model: GenerativeModel, batches: Iterable[RawBatch], device: torch.device, seed: int
) -> tuple[float, dict[str, float]]:
    """Event-weighted mean loss and parts over ``batches`` (eval mode, no gradients).

    Batch ``i`` draws its noise from ``seed + i`` and, with several ranks, is computed by
    rank ``i mod world_size``: the result does not depend on the number of ranks.
    """
    model.eval()
    ctx = distributed.context()
    total, n = 0.0, 0
    parts: dict[str, float] = {}
    with torch.no_grad():
        for i, raw in enumerate(batches):
            if i % ctx.world_size != ctx.rank:
                continue
            raw = accel.move_batch(raw, device)
            gen = torch.Generator(device=device).manual_seed(seed + i)
            loss, p = model.training_loss(raw, generator=gen)
            b = len(raw)
            total += float(loss) * b
            for k, v in p.items():
                parts[k] = parts.get(k, 0.0) + v * b
            n += b
    model.train()
    keys = distributed.union_keys(parts, ctx)  # a rank may have had no batch
    sums = distributed.all_sum([total, n, *(parts.get(k, 0.0) for k in keys)], ctx)
    total, n = sums[0], int(sums[1])
    parts = dict(zip(keys, sums[2:], strict=True))
    if n == 0:
        raise ConfigError("no validation events; prepare the store with --val > 0")
    return total / n, {k: v / n for k, v in parts.items()}


def _run_epoch(
    model: GenerativeModel,
    opt: torch.optim.Optimizer,
    state: _Progress,
    epoch: int,
    train_batches: Callable[[int], Iterable[RawBatch]],
    val_batches: Callable[[], Iterable[RawBatch]],
    config: TrainConfig,
    mdir: ModelDir,
    device: torch.device,
    progress: Callable[[int], None] | None,
    describe: Callable[[], None] | None = None,
    loss_fn: accel.LossFn | None = None,
    average: WeightAverage | None = None,
) -> dict[str, Any]:
    """Train and validate one epoch, update ``state``, write the files (``describe()``
    writes config.json, before the checkpoint that makes the run resumable); the record."""
    te = time.perf_counter()
    ctx = distributed.context()
    # each rank its own noise (rank 0: the one-process stream)
    gen = torch.Generator(device=device).manual_seed(
        epoch_seed(config.seed, epoch, 1 + 16 * ctx.rank))

    def lr_of_step(step: int) -> float:
        return learning_rate(lr=config.lr, schedule=config.lr_schedule, epoch=epoch, step=step,
                             epochs=config.epochs, batches_per_epoch=config.batches_per_epoch,
                             lr_min=config.lr_min)

    train_loss, train_parts, n = _train_epoch(
        model, opt, train_batches(epoch), gen, device, epoch, mdir, progress, loss_fn,
        config.precision, lr_of_step, average,
    )
    # the averaged weights (ema) are the ones validated and kept
    held = average.applied(model) if average is not None else contextlib.nullcontext()
    with held:
        val_loss, val_parts = _validate(model, val_batches(), device,
                                        epoch_seed(config.seed, 0, 2))
        improved = math.isfinite(val_loss) and val_loss < state.best_val - config.min_delta
        if improved:
            mdir.write_weights(model)
    if not math.isfinite(val_loss):
        raise TrainingDivergedError(
            f"validation loss became {val_loss} at epoch {epoch}; the last good checkpoint "
            f"(epoch {epoch - 1}) is kept in {mdir.path}. Try a lower --lr."
        )
    if improved:
        state.best_val, state.best_epoch, state.bad = val_loss, epoch, 0
    else:
        state.bad += 1
    record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
              "train_parts": train_parts, "val_parts": val_parts, "events": n,
              "seconds": time.perf_counter() - te, "lr": opt.param_groups[0]["lr"],
              "best": improved,
              "ranks": ctx.world_size}
    state.history.append(record)
    state.epoch = epoch
    mdir.write_history(state.history)
    if describe is not None:
        describe()
    mdir.write_checkpoint(model, opt, state.status(),
                          average=average.state_tensors() if average is not None else None)
    return record


def train_model(
    model: GenerativeModel,
    train_batches: Callable[[int], Iterable[RawBatch]],
    val_batches: Callable[[], Iterable[RawBatch]],
    config: TrainConfig,
    model_dir: str | os.PathLike[str],
    *,
    data: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` and keep the best weights in ``model_dir`` (see the module docstring).

    ``train_batches(epoch)`` returns the RawBatches of one epoch (deterministic per epoch);
    ``val_batches()`` the validation batches.  ``progress(1)`` is called after each training
    batch, ``on_epoch(record)`` after each epoch with the history record (``epoch``,
    ``train_loss``, ``val_loss``, their parts, ``seconds``, ``best``).  ``model.fit_data``
    must already have been called.  With ``resume=True`` training continues from the
    checkpoint in ``model_dir`` (the model must have been built with the same config).
    Raises :class:`TrainingDivergedError` on a NaN/infinite loss.
    """
    mdir = ModelDir(model_dir)
    if not distributed.context().is_main:  # only rank 0 writes (module docstring)
        return _train(model, train_batches, val_batches, config, _ReadOnly(mdir), data=data,
                      resume=resume, progress=None, on_epoch=None)
    created = not mdir.path.exists()
    mdir.create()
    try:
        return _train(model, train_batches, val_batches, config, mdir, data=data, resume=resume,
                      progress=progress, on_epoch=on_epoch)
    except BaseException:
        # a run that fails before its first checkpoint leaves nothing behind (no config.json
        # without weights); a later failure keeps the last good epoch's files
        if created and not any(mdir.path.iterdir()):
            mdir.path.rmdir()
        raise


def _train(
    model: GenerativeModel,
    train_batches: Callable[[int], Iterable[RawBatch]],
    val_batches: Callable[[], Iterable[RawBatch]],
    config: TrainConfig,
    mdir: Any,
    *,
    data: Mapping[str, Any] | None,
    resume: bool,
    progress: Callable[[int], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    ctx = distributed.context()
    device = resolve_device(distributed.rank_device(config.device, ctx))
    model.to(device).train()
    loss_fn = accel.loss_function(model, ctx, device)
    opt = (torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
           if config.weight_decay > 0 else torch.optim.Adam(model.parameters(), lr=config.lr))
    average = WeightAverage(model, decay=config.ema) if config.ema > 0 else None
    state = _resume(mdir, model, opt, device, average) if resume else _Progress()
    if resume:  # the stored settings, with an explicitly raised epoch limit
        mdir.write_config(model, train_config=config, data=data)
    t0 = time.perf_counter()
    stopped = "epochs"
    start = state.epoch + 1
    if resume and config.patience and state.bad >= config.patience:
        stopped, start = "early_stopping", config.epochs + 1
    for epoch in range(start, config.epochs + 1):
        # config.json only once there are weights to describe (a failed run leaves none)
        describe = (lambda: mdir.write_config(model, train_config=config, data=data)) if (
            epoch == start and not resume) else None
        with accel.matmul_precision(config.precision):
            record = _run_epoch(model, opt, state, epoch, train_batches, val_batches, config,
                                mdir, device, progress, describe, loss_fn, average)
        if on_epoch is not None:
            on_epoch(record)
        if config.patience and state.bad >= config.patience:
            stopped = "early_stopping"
            break
        if config.max_minutes is not None and distributed.broadcast_flag(
            time.perf_counter() - t0 > 60 * config.max_minutes, ctx
        ):
            stopped = "time"
            break
    distributed.barrier(ctx)  # rank 0 has written the files
    # the model directory ends with the best weights loaded into the returned model
    if mdir.has_weights():
        mdir.read_weights(model, device)
    model.eval()
    return TrainResult(model, state.history, state.best_epoch, state.best_val, stopped,
                       time.perf_counter() - t0)
