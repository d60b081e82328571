"""The accelerator side of training: precision, pinned-memory copies, the DDP-wrapped loss.

- :func:`precision` -- ``"fp32"`` (default: every figure in docs/results.md), ``"tf32"``
  (float32 matmuls on TensorFloat-32 tensor cores of Ampere+ GPUs: 10-bit mantissa products,
  float32 accumulation; no effect on CPU) or ``"bf16"`` (``torch.autocast`` to bfloat16 for the
  training forward pass; weights, Adam state and the loss stay float32).  Both trade precision
  of intermediate products for speed; neither was validated for fidelity in this project (no GPU
  was available, see docs/benchmarks.md), so keep ``fp32`` for results until they are.
- :func:`move_batch` -- a RawBatch to the training device; on CUDA through pinned host memory
  with a non-blocking copy, so the copy overlaps the previous step's kernels.
- :func:`loss_function` -- ``model.training_loss`` wrapped in ``DistributedDataParallel``
  when several ranks train (the gradients are averaged over the ranks in ``backward``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from fastmc.data.batch import RawBatch
from fastmc.models.base import GenerativeModel
from fastmc.workflows.distributed import DistContext

__all__ = ["PRECISIONS", "loss_function", "move_batch", "precision"]

PRECISIONS = ("fp32", "tf32", "bf16")

LossFn = Callable[[RawBatch, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


@contextlib.contextmanager
def matmul_precision(kind: str) -> Iterator[None]:
    """Allow TF32 matmuls (``kind == "tf32"``) for the ``with`` body; restored afterwards."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if kind == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def precision(kind: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of one training forward pass (``bf16``), else a no-op."""
    if kind not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {kind!r}")
    if kind == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def move_batch(raw: RawBatch, device: torch.device) -> RawBatch:
    """``raw`` on ``device``: via pinned memory and a non-blocking copy when it is CUDA."""
    if device.type != "cuda" or raw.device.type == "cuda":
        return raw.to(device)
    fields = dataclasses.fields(raw)
    return type(raw)(**{f.name: getattr(raw, f.name).pin_memory().to(device, non_blocking=True)
                        for f in fields})


class _Loss(torch.nn.Module):
    """``forward`` = ``model.training_loss``: what DistributedDataParallel wraps."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, raw: RawBatch, generator: torch.Generator):
        return self.model.training_loss(raw, generator=generator)


def loss_function(model: GenerativeModel, ctx: DistContext, device: torch.device) -> LossFn:
    """``f(raw, generator) -> (loss, parts)``: the model's loss, through DDP on several ranks.

    DDP broadcasts rank 0's weights when it wraps the model, and averages the gradients over
    the ranks during ``loss.backward()``.  Every parameter must receive a gradient (the model
    contract, tests/models/test_models_contract.py).
    """
    if not ctx.active:
        return lambda raw, gen: model.training_loss(raw, generator=gen)
    ids = [device.index] if device.type == "cuda" else None
    net = torch.nn.parallel.DistributedDataParallel(_Loss(model), device_ids=ids)
    return lambda raw, gen: net(raw, gen)
