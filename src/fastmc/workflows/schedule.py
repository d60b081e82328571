"""Learning-rate schedule and weight averaging of :func:`fastmc.workflows.train.train_model`.

:func:`learning_rate` is a pure function of the settings and the position in training (epoch,
batch), so a resumed run follows the same schedule as an uninterrupted one.
:class:`WeightAverage` keeps an exponential moving average of a model's parameters; training
validates, keeps and early-stops on the averaged weights when ``TrainConfig.ema > 0``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch

from fastmc.errors import ConfigError

__all__ = ["WeightAverage", "learning_rate"]


def learning_rate(
    *, lr: float, schedule: str, epoch: int, step: int, epochs: int, batches_per_epoch: int,
    lr_min: float = 0.0,
) -> float:
    """Learning rate of batch ``step`` (1-based) of ``epoch`` (1-based).

    ``"constant"``: ``lr``.  ``"cosine"``: from ``lr`` at the first batch down to ``lr_min``
    after ``epochs`` x ``batches_per_epoch`` batches, lr_min + (lr - lr_min) (1 + cos(pi t)) / 2
    with t the fraction of the batches done before this one (an epoch with more batches than
    ``batches_per_epoch`` holds the rate of its last nominal batch).
    """
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ConfigError(f"unknown learning-rate schedule {schedule!r}; use constant or cosine")
    done = (epoch - 1) * batches_per_epoch + min(step - 1, batches_per_epoch)
    t = min(done / (epochs * batches_per_epoch), 1.0)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * t))


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters.

    After update number n the average moves towards the parameters by 1 - d with
    d = min(decay, (1 + n) / (10 + n)): early updates weigh more, so the average does not
    remember the random initial weights.  Buffers are not averaged (they are the model's).
    """

    def __init__(self, model: torch.nn.Module, *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"weight-average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates_ = 0
        self.average_ = {name: p.detach().clone() for name, p in self._params(model)}

    @staticmethod
    def _params(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return ((n, p) for n, p in model.named_parameters() if p.is_floating_point())

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the model's current parameters (after an optimizer step)."""
        self.updates_ += 1
        d = min(self.decay, (1 + self.updates_) / (10 + self.updates_))
        for name, p in self._params(model):
            self.average_[name].lerp_(p.detach(), 1.0 - d)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block the model holds the averaged parameters; its own come back after."""
        own = {}
        with torch.no_grad():
            for name, p in self._params(model):
                own[name] = p.detach().clone()
                p.copy_(self.average_[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self._params(model):
                    p.copy_(own[name])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The average and the update count, as tensors (for the checkpoint)."""
        return {**{f"param.{k}": v for k, v in self.average_.items()},
                "updates": torch.tensor(self.updates_, dtype=torch.int64)}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_tensors` (strict: the parameter names must match)."""
        names = {k[len("param."):] for k in tensors if k.startswith("param.")}
        if names != set(self.average_) or "updates" not in tensors:
            raise ConfigError("the checkpoint's weight average does not fit the model")
        for name in names:
            self.average_[name].copy_(tensors[f"param.{name}"])
        self.updates_ = int(tensors["updates"])
