"""The one kinematics core: angle wrapping, the Dark Machines object order and its group-rank
table, for numpy arrays and torch tensors alike (the same function takes either).

Dark Machines order: jets (``j`` and ``b`` together) by descending pT, then electrons
(``e-``/``e+``), muons (``m-``/``m+``), photons (``g``), each group by descending pT, padding
(type 0) last.  Sorting is exact (two stable sorts, no combined floating-point key), so equal
pT keep their input order and nearly equal pT are never confused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["GROUP_RANK", "dark_machines_order", "sort_dark_machines", "wrap_angle"]

#: Type code -> rank of its group in an event: jets 0, electrons 1, muons 2, photons 3,
#: padding (code 0) 4 so that it sorts last.
GROUP_RANK: tuple[int, ...] = (4, 0, 0, 1, 1, 2, 2, 3)
_GROUP_RANK_NP = np.array(GROUP_RANK, np.int64)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def wrap_angle(phi: Any) -> Any:
    """Angles (radians, any shape, numpy array or torch tensor) wrapped into (-pi, pi].

    dtype and device are kept.  Values already in (-pi, pi] come back bit for bit unchanged
    (the shift by pi and back would round them).
    """
    if _is_torch(phi):
        import torch

        out = torch.remainder(phi + math.pi, 2 * math.pi) - math.pi  # [-pi, pi)
        out = torch.where(out <= -math.pi, out + 2 * math.pi, out)
        return torch.where((phi > -math.pi) & (phi <= math.pi), phi, out)
    phi = np.asarray(phi)
    out = np.remainder(phi + np.pi, 2 * np.pi) - np.pi
    out = np.where(out <= -np.pi, out + 2 * np.pi, out)
    out = np.where((phi > -np.pi) & (phi <= np.pi), phi, out)
    return out.astype(phi.dtype, copy=False)


def dark_machines_order(types: Any, pt: Any) -> Any:
    """Slot permutation int64 [N, K] that puts each event's objects in Dark Machines order.

    ``types`` int [N, K] type codes (0 padding), ``pt`` float [N, K] (GeV); numpy or torch
    (the result is of the same kind, on the same device).  Apply it with
    ``take_along_axis`` / ``gather`` or use :func:`sort_dark_machines`.
    """
    if _is_torch(types):
        import torch

        rank = torch.tensor(GROUP_RANK, device=types.device)[types.long()]
        if torch.onnx.is_in_onnx_export():
            # ONNX has no stable sort (fastmc export): one sort by a float64 key, group then
            # descending pT; it differs from the exact order only for equal pT in a group
            pt0 = torch.where(types == 0, torch.zeros_like(pt), pt).double()
            return torch.sort(rank.double() * 1e9 - pt0, dim=1).indices
        key = torch.where(types == 0, torch.full_like(pt, -math.inf), pt)
        by_pt = torch.argsort(-key, dim=1, stable=True)
        by_rank = torch.argsort(rank.gather(1, by_pt), dim=1, stable=True)
        return by_pt.gather(1, by_rank)
    types = np.asarray(types)
    rank = _GROUP_RANK_NP[types.astype(np.int64)]
    key = np.where(types == 0, -np.inf, np.asarray(pt, np.float64))
    by_pt = np.argsort(-key, axis=1, kind="stable")
    by_rank = np.argsort(np.take_along_axis(rank, by_pt, axis=1), axis=1, kind="stable")
    return np.take_along_axis(by_pt, by_rank, axis=1)


def sort_dark_machines(types: Any, p4: Any) -> tuple[Any, Any]:
    """(``types`` [N, K], ``p4`` [N, K, 4] as (E, pT, eta, phi)) with objects in Dark
    Machines order; numpy arrays or torch tensors."""
    order = dark_machines_order(types, p4[..., 1])
    if _is_torch(types):
        return types.gather(1, order), p4.gather(1, order[..., None].expand_as(p4))
    return (
        np.take_along_axis(types, order, axis=1),
        np.take_along_axis(p4, order[..., None], axis=1),
    )
