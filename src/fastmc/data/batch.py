"""``RawBatch``: a batch of events as torch tensors, the currency between loader and models.

The loader yields RawBatch; each model's encoding turns it into its own inputs (and its outputs
back into a RawBatch), so every model, whatever its parameterisation, trains from the same
stream.  Units as in :class:`fastmc.events.Events` (GeV, radians).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fastmc.events import Events

__all__ = ["RawBatch", "TensorBatch", "cat_batches", "raw_from_events"]


class TensorBatch:
    """Mixin for dataclasses of tensors whose first dimension is the batch (``types`` [B, ...])."""

    types: torch.Tensor

    def __len__(self) -> int:
        return self.types.shape[0]

    def to(self, device: torch.device | str):
        """The same batch on ``device``."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields})


@dataclasses.dataclass
class RawBatch(TensorBatch):
    """B events as tensors (all on one device).

    Attributes
    ----------
    types : int64 [B, K]   object type codes (0 padding, 1..7 = j, b, e-, e+, m-, m+, g)
    p4 : float [B, K, 4]   (E, pT, eta, phi), GeV; zero for padding
    met : float [B]        MET, GeV
    met_phi : float [B]    MET azimuth, radians
    weight : float [B]     event weights
    process : int64 [B]    process index (into the store's / model's process list)
    """

    types: torch.Tensor
    p4: torch.Tensor
    met: torch.Tensor
    met_phi: torch.Tensor
    weight: torch.Tensor
    process: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.p4.device

    @classmethod
    def from_events(
        cls,
        events: Events,
        *,
        process: np.ndarray | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> RawBatch:
        """Tensors from Events; ``process`` (int [N]) defaults to ``events.process_code``."""
        proc = events.process_code if process is None else process

        def tensor(arr: np.ndarray) -> torch.Tensor:
            arr = np.asarray(arr)
            if not arr.flags.writeable:  # read-only (memory-mapped or Arrow) data: copy once
                arr = arr.copy()
            return torch.as_tensor(arr, device=device)

        return cls(
            types=tensor(events.types).long(),
            p4=tensor(events.p4).to(dtype),
            met=tensor(events.met).to(dtype),
            met_phi=tensor(events.met_phi).to(dtype),
            weight=tensor(events.weight).to(dtype),
            process=tensor(proc).long(),
        )

    def to_events(
        self,
        *,
        process_names: tuple[str, ...] = ("generated",),
        event_id_start: int = 0,
        meta: dict | None = None,
    ) -> Events:
        """Events (numpy, CPU) from this batch; event IDs count up from ``event_id_start``."""
        n = len(self)
        return Events(
            types=self.types.detach().to("cpu", torch.int8).numpy(),
            p4=self.p4.detach().to("cpu", torch.float32).numpy(),
            met=self.met.detach().to("cpu", torch.float32).numpy(),
            met_phi=self.met_phi.detach().to("cpu", torch.float32).numpy(),
            event_id=np.arange(event_id_start, event_id_start + n, dtype=np.int64),
            process_code=self.process.detach().cpu().numpy().astype(np.int32),
            process_names=process_names,
            weight=self.weight.detach().to("cpu", torch.float64).numpy(),
            meta=dict(meta or {}),
        )


def raw_from_events(
    events: Events, *, process: np.ndarray | None = None, device: torch.device | str | None = None
) -> RawBatch:
    """RawBatch of (possibly memory-mapped, read-only) Events: the arrays are copied first.

    ``process`` as in :meth:`RawBatch.from_events` (None: the events' own process codes).
    """
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


def cat_batches(parts: list[RawBatch]) -> RawBatch:
    """The RawBatches ``parts`` (same device, same K) as one batch, in order."""
    return RawBatch(
        **{
            f.name: torch.cat([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(RawBatch)
        }
    )
