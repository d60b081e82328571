"""Settings and outcome of a training run: :class:`TrainConfig`, :class:`TrainResult`."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

from fastmc.config import check_config, config_to_dict, setting
from fastmc.errors import ConfigError, FastMCError
from fastmc.models.base import GenerativeModel

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "describe_config",
    "load_yaml_config",
]


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
    lr : float                 Adam learning rate (1e-3); with lr_schedule "cosine" the rate
                               of the first batch
    lr_schedule : str          "constant" (default) or "cosine": the rate falls from lr to
                               lr_min along half a cosine over epochs x batches_per_epoch
                               batches (fastmc.workflows.schedule; the horizon is ``epochs``,
                               so a run cut short by max_minutes or early stopping never
                               reaches lr_min, and resuming with a raised --epochs stretches
                               the rest of the schedule)
    lr_min : float             the cosine schedule's last rate (0)
    weight_decay : float       0 (default: Adam) or the decoupled weight decay of AdamW
                               (e.g. 0.01: every step shrinks each weight by lr x
                               weight_decay of itself, a regulariser against overfitting
                               small training sets)
    ema : float                0 (default) or the decay of an exponential moving average of
                               the weights, updated after every batch (e.g. 0.999); the
                               validation loss, the saved best weights and early stopping
                               then use the averaged weights
    seed : int                 seed of the initial weights, batches and noise (0)
    device : str               "auto" (CUDA if available), "cpu", "cuda" or "cuda:N"
    patience : int             stop after this many epochs without a better validation
                               loss (10; 0 disables early stopping)
    min_delta : float          improvement needed to count as better (0)
    val_events : int           validation events used per epoch, at most (50000)
    fit_events : int           training events for the model's data-dependent state (100000),
                               shared evenly between the processes
    loader_mode : str          "balanced" (one event of every process in turn, the theses'
                               scheme), "count" or "weight" (proportional; see
                               fastmc.data.loader)
    process : str or None      train on this process of the store only (None: all)
    max_minutes : float|None   stop after the epoch that passes this wall time (None: no
                               limit; makes the number of epochs machine-dependent)
    precision : str            "fp32" (default), "tf32" (TF32 matmuls on Ampere+ GPUs) or
                               "bf16" (bfloat16 autocast of the forward pass); see
                               fastmc.workflows.accel
    """

    epochs: int = setting(50, ge=1)
    batch_size: int = setting(1000, ge=1)
    batches_per_epoch: int = setting(100, ge=1)
    lr: float = setting(1e-3, gt=0, lt=10)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_min: float = setting(0.0, ge=0, lt=10)
    weight_decay: float = setting(0.0, ge=0, lt=1)
    ema: float = setting(0.0, ge=0, lt=1)
    seed: int = setting(0, ge=0)
    device: str = "auto"
    patience: int = setting(10, ge=0)
    min_delta: float = setting(0.0, ge=0)
    val_events: int = setting(50_000, ge=1)
    fit_events: int = setting(100_000, ge=1)
    loader_mode: Literal["balanced", "count", "weight"] = "balanced"
    process: str | None = None
    max_minutes: float | None = setting(None, gt=0)
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        check_config(self)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(
                f"TrainConfig.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}"
            )
        if self.lr_schedule == "cosine" and self.lr_min >= self.lr:
            raise ConfigError(
                f"TrainConfig.lr_min ({self.lr_min}) must be below lr ({self.lr}) with the "
                "cosine schedule"
            )


@dataclasses.dataclass
class TrainResult:
    """What a training run did: epochs run, best epoch and loss, why it stopped."""

    model: GenerativeModel
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float
    stopped: str  # "epochs", "early_stopping", "time"
    seconds: float

    def __repr__(self) -> str:
        return (f"TrainResult(model={self.model.name!r}, epochs={len(self.history)}, "
                f"best_epoch={self.best_epoch}, best_val_loss={self.best_val_loss:.4g}, "
                f"stopped={self.stopped!r}, seconds={self.seconds:.1f})")


def load_yaml_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training YAML file: ``{"model": name, "model_config": {...}, "train": {...}}``.

    Every key is optional; unknown top-level keys raise ConfigError.  Example::

        model: beta-vae
        model_config: {latent_dim: 80, beta: 0.001}
        train: {epochs: 20, batch_size: 1000, lr: 0.001}
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys model, model_config, train")
    unknown = sorted(set(data) - {"model", "model_config", "train"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; use model, model_config, train"
        )
    for key in ("model_config", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"{path}: {key} must be a mapping")
    return data


def describe_config(config: TrainConfig) -> str:
    """One JSON line of the training settings (for logs)."""
    return json.dumps(config_to_dict(config))
