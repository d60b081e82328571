"""The (eta, phi) -> (-eta, -phi) symmetry of pp collisions (a rotation by pi about the x axis).

One mechanism per model (:class:`~fastmc.models.flow.config.FlowConfig`):

- training-data augmentation: :func:`mirror_events` flips a random half of each training batch;
- in the parameterisation (``canonical_eta_sign``): :func:`orient` stores every event in the
  orientation where its first object has eta >= 0 (the eta and phi parameters and the MET phi
  parameter times the sign s of that eta; the first object's eta parameter a = atanh(|eta| /
  eta_max) >= 0 as log a), and generation draws s uniformly, so generated samples are exactly
  symmetric.

A second exact symmetry, the reflection phi -> -phi (a mirror through a plane that holds the
beam; parity composed with a rotation about the y axis: a distribution of momenta and charges can
only break it through a triple product, which needs CP violation or absorptive phases), enters
as augmentation when asked (``reflect_augment``): :func:`reflect_events`.
"""

from __future__ import annotations

import dataclasses

import torch

from fastmc.data.batch import RawBatch
from fastmc.kinematics import wrap_angle

__all__ = ["FEATURES_PER_SLOT", "angle_columns", "mirror_events", "orient", "reflect_events"]

FEATURES_PER_SLOT = 4  # pT, eta, phi, mass parameters per slot (physics.py uses this one)


def _negate(raw: RawBatch, flip: torch.Tensor, columns: tuple[int, ...]) -> RawBatch:
    """``raw`` with the p4 ``columns`` (2 = eta, 3 = phi) and, with phi, the MET phi negated
    where ``flip`` (bool [B]) is set; angles wrapped back into (-pi, pi]."""
    sign = torch.where(flip, -1.0, 1.0).to(raw.p4.dtype)
    p4 = raw.p4.clone()
    for c in columns:  # + 0.0 turns -0.0 (padding) into 0.0
        p4[..., c] = p4[..., c] * sign[:, None] + 0.0
    p4[..., 3] = wrap_angle(p4[..., 3])
    return dataclasses.replace(raw, p4=p4, met_phi=wrap_angle(raw.met_phi * sign + 0.0))


def mirror_events(raw: RawBatch, flip: torch.Tensor) -> RawBatch:
    """Events rotated by pi about the x axis, (eta, phi, MET phi) -> (-eta, -phi, -MET phi),
    where ``flip`` (bool [B]) is set; the others unchanged.  An exact symmetry of pp
    collisions (training-data augmentation).  pT, E, the order and every dR are unchanged;
    phi stays in (-pi, pi]."""
    return _negate(raw, flip, (2, 3))


def reflect_events(raw: RawBatch, flip: torch.Tensor) -> RawBatch:
    """Events reflected phi -> -phi (and MET phi -> -MET phi) where ``flip`` (bool [B]) is set;
    the others unchanged.  pT, E, eta, the order and every dR and mass are unchanged; phi stays
    in (-pi, pi]."""
    return _negate(raw, flip, (3,))


def angle_columns(n_slots: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Which of the ``4 S + 2`` slot parameters are angles: every slot's eta and phi and the
    MET phi (bool [4 S + 2]); the rest are pT, mass and log MET."""
    cols = torch.zeros(FEATURES_PER_SLOT * n_slots + 2, dtype=torch.bool, device=device)
    cols[1 : FEATURES_PER_SLOT * n_slots : FEATURES_PER_SLOT] = True
    cols[2 : FEATURES_PER_SLOT * n_slots : FEATURES_PER_SLOT] = True
    cols[FEATURES_PER_SLOT * n_slots + 1] = True
    return cols


def orient(
    x: torch.Tensor,
    sign: torch.Tensor,
    first_slot: torch.Tensor,
    has: torch.Tensor,
    *,
    n_slots: int,
    eta_tolerance: float,
    forward: bool,
) -> torch.Tensor:
    """The canonical orientation of slot parameters (``forward``) or back (see the module
    docstring).  ``x`` [B, 4 S + 2], ``sign`` [B] of +-1, ``first_slot`` int [B] (slot of the
    first object), ``has`` bool [B] (the event has an object)."""
    cols = angle_columns(n_slots, x.device)
    rows = torch.arange(x.shape[0], device=x.device)
    col = FEATURES_PER_SLOT * first_slot + 1
    x = x.clone()
    if forward:
        x = torch.where(cols, x * sign[:, None], x)
        a = x[rows, col]
        x[rows, col] = torch.where(has, a.clamp_min(eta_tolerance).log(), a)
    else:
        v = x[rows, col]
        x[rows, col] = torch.where(has, v.clamp(max=30.0).exp(), v)
        x = torch.where(cols, x * sign[:, None], x)
    return x
