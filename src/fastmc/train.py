"""Training loop of every :class:`~fastmc.models.base.GenerativeModel`: ``fastmc train``.

:func:`train_model` is model-agnostic: Adam on :meth:`GenerativeModel.training_loss`, the
validation loss after every epoch, early stopping on it, and a checkpoint in the model
directory after every epoch (atomic writes):

``weights.safetensors``     the best weights so far (lowest validation loss): what
                            ``fastmc generate`` uses
``checkpoint.safetensors``  the latest weights and Adam state (for ``--resume``)
``checkpoint.json``         epoch, best validation loss, early-stopping counter, Adam settings
``history.json``            one record per epoch: losses and their parts, seconds, lr
``config.json``             model and training settings, fastmc version, data provenance

A NaN or infinite loss stops training with :class:`TrainingDivergedError`; the files of the
last good epoch are left untouched.  The same seed gives the same weights: the initial
weights come from ``seed``, and each epoch's batches and noise from (``seed``, epoch), so a
resumed run continues exactly as an uninterrupted one would.

:func:`train_from_store` adds the data: an event store (``fastmc prepare``), the balanced
loader (:class:`fastmc.data.loader.EventLoader`) for training and the store's ``val`` split.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from fastmc.data.batch import RawBatch
from fastmc.errors import FastMCError
from fastmc.models.base import (
    CONFIG_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    GenerativeModel,
    apply_model_tensors,
    build_model,
    config_from_dict,
    config_to_dict,
    load_json,
    load_tensors,
    model_description,
    model_tensors,
    read_model_config,
    save_json,
    save_tensors,
)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "load_yaml_config",
    "resolve_device",
    "train_from_store",
    "train_model",
]

CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"


class TrainingDivergedError(FastMCError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of a training run (CLI flags and the YAML ``train:`` section map onto it).

    Attributes
    ----------
    epochs : int               maximum number of epochs (50)
    batch_size : int           events per batch (1000; the theses used 10000)
    batches_per_epoch : int    batches per epoch (100; the theses used 1000)
    lr : float                 Adam learning rate (1e-3)
    seed : int                 seed of the initial weights, batches and noise (0)
    device : str               "auto" (CUDA if available), "cpu" or "cuda"
    patience : int             stop after this many epochs without a better validation
                               loss (10; 0 disables early stopping)
    min_delta : float          improvement needed to count as better (0)
    val_events : int           validation events used per epoch, at most (50000)
    fit_events : int           training events for the model's data-dependent state (100000)
    loader_mode : str          "balanced" (one event of every process in turn, the theses'
                               scheme), "count" or "weight" (proportional; see
                               fastmc.data.loader)
    process : str or None      train on this process of the store only (None: all)
    max_minutes : float|None   stop after the epoch that passes this wall time (None: no
                               limit; makes the number of epochs machine-dependent)
    """

    epochs: int = 50
    batch_size: int = 1000
    batches_per_epoch: int = 100
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    patience: int = 10
    min_delta: float = 0.0
    val_events: int = 50_000
    fit_events: int = 100_000
    loader_mode: str = "balanced"
    process: str | None = None
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "batches_per_epoch", "val_events", "fit_events"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.lr, int | float) or not (0 < self.lr < 10):
            raise ValueError(f"lr must be a positive number below 10, got {self.lr!r}")
        if not isinstance(self.min_delta, int | float) or self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.loader_mode not in ("balanced", "count", "weight"):
            raise ValueError(
                f"loader_mode must be 'balanced', 'count' or 'weight', got {self.loader_mode!r}"
            )
        if self.max_minutes is not None and not (
            isinstance(self.max_minutes, int | float) and self.max_minutes > 0
        ):
            raise ValueError(f"max_minutes must be a positive number, got {self.max_minutes!r}")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_model` did: epochs run, best epoch and loss, why it stopped."""

    model: GenerativeModel
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float
    stopped: str  # "epochs", "early_stopping", "time"
    seconds: float


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; ValueError if CUDA is asked for and absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return dev


def load_yaml_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training YAML file: ``{"model": name, "model_config": {...}, "train": {...}}``.

    Every key is optional; unknown top-level keys raise ValueError.  Example::

        model: beta-vae
        model_config: {latent_dim: 80, beta: 0.001}
        train: {epochs: 20, batch_size: 1000, lr: 0.001}
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with keys model, model_config, train")
    unknown = sorted(set(data) - {"model", "model_config", "train"})
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {', '.join(unknown)}; use model, model_config, train"
        )
    for key in ("model_config", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise ValueError(f"{path}: {key} must be a mapping")
    return data


# ---------------------------------------------------------------------------- checkpoints
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    state = opt.state_dict()
    tensors = {}
    for idx, st in state["state"].items():
        for name, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{idx}.{name}"] = t
    return tensors, state["param_groups"]


def _load_optimizer(
    opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], groups: Any
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def _write_checkpoint(
    model_dir: Path,
    model: GenerativeModel,
    opt: torch.optim.Optimizer,
    status: dict[str, Any],
) -> None:
    tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
    opt_tensors, groups = _optimizer_tensors(opt)
    tensors.update(opt_tensors)
    save_tensors(model_dir / CHECKPOINT_TENSORS, tensors)
    save_json(model_dir / CHECKPOINT_JSON, {**status, "param_groups": groups})


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63 - 1)


# ---------------------------------------------------------------------------- the loop
def _finite(value: float) -> bool:
    return math.isfinite(value)


def _validate(
    model: GenerativeModel,
    batches: Iterable[RawBatch],
    device: torch.device,
    seed: int,
) -> tuple[float, dict[str, float]]:
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total, n = 0.0, 0
    parts: dict[str, float] = {}
    with torch.no_grad():
        for raw in batches:
            raw = raw.to(device)
            loss, p = model.training_loss(raw, generator=gen)
            b = len(raw)
            total += float(loss) * b
            for k, v in p.items():
                parts[k] = parts.get(k, 0.0) + v * b
            n += b
    model.train()
    if n == 0:
        raise ValueError("no validation events; prepare the store with --val > 0")
    return total / n, {k: v / n for k, v in parts.items()}


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
    must already have been called.  With ``resume=True`` training continues from
    ``checkpoint.*`` in ``model_dir`` (the model must have been built with the same config).
    Raises :class:`TrainingDivergedError` on a NaN/infinite loss.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    history: list[dict[str, Any]] = []
    start_epoch, best_val, best_epoch, bad = 1, math.inf, 0, 0
    if resume:
        status = load_json(model_dir / CHECKPOINT_JSON)
        tensors, _ = load_tensors(model_dir / CHECKPOINT_TENSORS, device)
        apply_model_tensors(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(opt, tensors, status["param_groups"])
        history = list(status["history"])
        start_epoch = int(status["epoch"]) + 1
        best_val, best_epoch, bad = float(status["best_val_loss"]), int(status["best_epoch"]), int(
            status["bad_epochs"]
        )
    description = model_description(model, train_config=config, data=data)
    save_json(model_dir / CONFIG_FILE, description)
    t0 = time.perf_counter()
    stopped = "epochs"
    if resume and config.patience and bad >= config.patience:
        stopped = "early_stopping"
        start_epoch = config.epochs + 1
    for epoch in range(start_epoch, config.epochs + 1):
        te = time.perf_counter()
        gen = torch.Generator(device=device).manual_seed(_epoch_seed(config.seed, epoch, 1))
        total, n, parts = 0.0, 0, {}
        for step, raw in enumerate(train_batches(epoch), start=1):
            raw = raw.to(device)
            loss, p = model.training_loss(raw, generator=gen)
            value = float(loss.detach())
            if not _finite(value):
                last = (
                    f"the last good checkpoint (epoch {epoch - 1}) is kept in {model_dir}"
                    if epoch > 1
                    else "no checkpoint was written"
                )
                raise TrainingDivergedError(
                    f"training loss became {value} at epoch {epoch}, batch {step}; {last}. "
                    "Try a lower --lr, a smaller --beta, or standardize: true in model_config."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            b = len(raw)
            total += value * b
            n += b
            for k, v in p.items():
                parts[k] = parts.get(k, 0.0) + v * b
            if progress is not None:
                progress(1)
        if n == 0:
            raise ValueError("the training loader yielded no events")
        val_loss, val_parts = _validate(model, val_batches(), device, _epoch_seed(config.seed, 0, 2))
        if not _finite(val_loss):
            raise TrainingDivergedError(
                f"validation loss became {val_loss} at epoch {epoch}; the last good checkpoint "
                f"(epoch {epoch - 1}) is kept in {model_dir}. Try a lower --lr."
            )
        improved = val_loss < best_val - config.min_delta
        if improved:
            best_val, best_epoch, bad = val_loss, epoch, 0
            save_tensors(model_dir / WEIGHTS_FILE, model_tensors(model))
        else:
            bad += 1
        record = {
            "epoch": epoch,
            "train_loss": total / n,
            "val_loss": val_loss,
            "train_parts": {k: v / n for k, v in parts.items()},
            "val_parts": val_parts,
            "events": n,
            "seconds": time.perf_counter() - te,
            "lr": config.lr,
            "best": improved,
        }
        history.append(record)
        save_json(model_dir / HISTORY_FILE, history)
        _write_checkpoint(
            model_dir,
            model,
            opt,
            {
                "epoch": epoch,
                "best_val_loss": best_val,
                "best_epoch": best_epoch,
                "bad_epochs": bad,
                "history": history,
            },
        )
        if on_epoch is not None:
            on_epoch(record)
        if config.patience and bad >= config.patience:
            stopped = "early_stopping"
            break
        if config.max_minutes is not None and time.perf_counter() - t0 > 60 * config.max_minutes:
            stopped = "time"
            break
    # the model directory ends with the best weights loaded into the returned model
    if (model_dir / WEIGHTS_FILE).exists():
        tensors, _ = load_tensors(model_dir / WEIGHTS_FILE, device)
        apply_model_tensors(model, tensors)
    model.eval()
    return TrainResult(model, history, best_epoch, best_val, stopped, time.perf_counter() - t0)


# ---------------------------------------------------------------------------- from a store
def _store_batches(
    events_list: list[Any], batch_size: int, limit: int, device: torch.device | str = "cpu"
) -> Iterator[RawBatch]:
    """Sequential RawBatches over (memory-mapped) Events, at most ``limit`` events in all."""
    left = limit
    for ev in events_list:
        for s in range(0, len(ev), batch_size):
            if left <= 0:
                return
            part = ev[s : s + min(batch_size, left)]
            left -= len(part)
            yield raw_from_events(part, device=device)


def raw_from_events(
    events: Any, *, process: Any = None, device: torch.device | str | None = None
) -> RawBatch:
    """RawBatch of (possibly memory-mapped, read-only) Events: the arrays are copied first."""
    import numpy as np

    copy = dataclasses.replace(
        events,
        types=np.array(events.types),
        p4=np.array(events.p4),
        met=np.array(events.met),
        met_phi=np.array(events.met_phi),
        weight=np.array(events.weight),
        process_code=np.array(events.process_code),
    )
    return RawBatch.from_events(copy, process=process, device=device)


def _provenance(store: Any, process: str | None) -> dict[str, Any]:
    meta = store.meta
    return {
        "store": str(Path(store.path).resolve()),
        "store_schema_version": meta.get("schema_version"),
        "store_seed": meta.get("seed"),
        "fractions": meta.get("fractions"),
        "counts": meta.get("counts"),
        "sources": [
            {k: s.get(k) for k in ("name", "sha256", "events", "size")} for s in store.sources
        ],
        "process": process,
    }


def _process_info(store: Any, processes: tuple[str, ...]) -> dict[str, Any]:
    xsec = store.meta.get("cross_section_weight", {})
    out = {}
    for p in processes:
        n_train = store.n_events("train", p)
        out[p] = {
            "train_events": n_train,
            "train_weight_sum": store.weight_sum("train", p),
            # sigma x 10/fb summed over every split: what a generated sample should total
            "cross_section_weight": float(xsec.get(p, store.weight_sum("train", p))),
        }
    return out


def train_from_store(
    store_path: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    model_name: str = "beta-vae",
    model_config: Mapping[str, Any] | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model_name`` on an event store's ``train`` split, validate on its ``val`` split.

    ``model_config`` overrides the model's default settings (dict).  With ``resume`` the
    model and training settings are read back from ``model_dir`` (``config`` may raise
    ``epochs``).  See :func:`train_model` for the rest.
    """
    from fastmc.data.loader import EventLoader
    from fastmc.data.store import open_store

    config = config or TrainConfig()
    store = open_store(store_path)
    model_dir = Path(model_dir)
    if resume:
        desc = read_model_config(model_dir)
        model_name = desc["model"]
        model_config = desc["model_config"]
        saved = config_from_dict(TrainConfig, desc["train_config"])
        config = dataclasses.replace(saved, epochs=max(saved.epochs, config.epochs))
    processes = store.processes if config.process is None else (config.process,)
    if config.process is not None:
        store.process_index(config.process)  # ValueError for an unknown process
    torch.manual_seed(config.seed)
    model = build_model(model_name, dict(model_config or {}), processes=processes)
    saved_info = dict(desc.get("info") or {}) if resume else {}
    model.info = {**saved_info, "processes": _process_info(store, processes)}

    def events(split: str) -> list[Any]:
        evs = [store.events(split, p) for p in processes]
        # process codes re-indexed into the model's process list
        out = []
        for i, ev in enumerate(evs):
            ev = dataclasses.replace(ev, process_code=ev.process_code * 0 + i, process_names=processes)
            out.append(ev)
        return out

    if not resume:
        fit_parts = list(_store_batches(events("train"), config.fit_events, config.fit_events))
        if fit_parts:
            model.fit_data(_cat(fit_parts))
    val_events = events("val")
    device = resolve_device(config.device)
    store_idx = [store.process_index(p) for p in processes]
    remap = torch.full((len(store.processes),), -1, dtype=torch.long)
    remap[store_idx] = torch.arange(len(processes))
    loader = EventLoader(
        store,
        "train",
        batch_size=config.batch_size,
        batches_per_epoch=config.batches_per_epoch,
        mode=config.loader_mode,
        seed=config.seed,
        processes=list(processes),
    )

    def train_batches(epoch: int) -> Iterator[RawBatch]:
        loader.set_epoch(epoch)
        for raw in loader:
            raw.process = remap[raw.process]  # store's process codes -> the model's
            yield raw

    def val_batches() -> Iterable[RawBatch]:
        per = max(1, config.val_events // max(1, len(val_events)))
        return _store_batches_each(val_events, config.batch_size, per, device)

    return train_model(
        model,
        train_batches,
        val_batches,
        config,
        model_dir,
        data=_provenance(store, config.process),
        resume=resume,
        progress=progress,
        on_epoch=on_epoch,
    )


def _cat(parts: list[RawBatch]) -> RawBatch:
    return RawBatch(
        **{
            f.name: torch.cat([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(RawBatch)
        }
    )


def _store_batches_each(
    events_list: list[Any], batch_size: int, per: int, device: torch.device
) -> Iterator[RawBatch]:
    for ev in events_list:
        yield from _store_batches([ev], batch_size, per, device)


def describe_config(config: TrainConfig) -> str:
    """One JSON line of the training settings (for logs)."""
    return json.dumps(config_to_dict(config))
