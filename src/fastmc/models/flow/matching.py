"""Conditional flow matching over object tokens: the kinematics backbone of ``mode: matching``.

The structure-first flow (:mod:`fastmc.models.flow.model`) draws an object-type pattern and
then the standardised physics parameters ``x`` [B, D] of :mod:`fastmc.models.flow.physics`
(``D = 4 S + 2``: 4 numbers per slot, 2 for MET).  In ``matching`` mode those parameters come
from an ordinary differential equation ``dx/dt = v(x, t | pattern)`` integrated from standard
normal noise at ``t = 0`` to the data at ``t = 1`` (rectified flow / optimal-transport
conditional flow matching, Lipman et al. 2023, Liu et al. 2023; for LHC events with a
transformer over objects see arXiv:2405.14806).

:class:`VelocityField` is a transformer encoder (torch's ``nn.TransformerEncoder``, pre-norm,
GELU) over one token per slot (its 4 parameters) and one MET token (2 parameters, zero-padded
to 4).  Each token's embedding is the sum of a linear map of its parameters, an embedding of
its object type (0..7 for slots, 8 for the MET token), an embedding of its slot index, an
embedding of the time (sinusoidal features -> MLP) and a projection of the event context (the
model's ``context(...)`` vector: pattern embedding, counts, process embedding, ...).  Absent
slots are left out of attention (key padding mask) and every absent parameter (absent slots,
the first object's azimuth, the MET azimuth of an event without objects) is fed as zero, so
nothing about padding reaches the present tokens.  A linear layer per token (zero-initialised,
so the field starts at v = 0) maps back to 4 numbers; the MET token uses its first 2.

Training (:func:`cfm_loss`): ``z ~ N(0, 1)``, ``t ~ U(0, 1)`` per event, ``x_t = (1 - t) z + t
x``, target ``x - z``, mean squared error over the present dimensions.  Sampling
(:func:`integrate`): fixed-step Euler, midpoint or classical Runge-Kutta (rk4) from ``t = 0`` to
``t = 1``; deterministic given the noise.  No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SOLVERS", "VelocityField", "cfm_loss", "integrate"]

#: ODE solvers of :func:`integrate` and the velocity evaluations each needs per step
SOLVERS = {"euler": 1, "midpoint": 2, "rk4": 4}
SLOT_FEATURES = 4
MET_FEATURES = 2
MET_TYPE = 8  # token type of the MET token (slot types are 0..7)


class VelocityField(nn.Module):
    """Transformer velocity field ``v(x_t, t | slot types, context)`` (module docstring).

    Parameters
    ----------
    n_slots : int        S, object slots per event (x has D = 4 S + 2 entries)
    context_dim : int    C, width of the event context vector
    dim : int            token width
    layers, heads : int  transformer encoder layers and attention heads (heads divide dim)
    ff : int             width of each layer's feed-forward block
    dropout : float      dropout of the encoder layers (training only)
    """

    def __init__(self, *, n_slots: int, context_dim: int, dim: int = 128, layers: int = 4,
                 heads: int = 4, ff: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"cfm_heads ({heads}) must divide cfm_dim ({dim})")
        if dim % 2:
            raise ValueError(f"cfm_dim must be even (sinusoidal time features), got {dim}")
        self.n_slots = n_slots
        self.dim = dim
        self.inp = nn.Linear(SLOT_FEATURES, dim)
        self.type_embed = nn.Embedding(MET_TYPE + 1, dim)
        self.slot_embed = nn.Embedding(n_slots + 1, dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.ctx_proj = nn.Linear(context_dim, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.out = nn.Linear(dim, SLOT_FEATURES)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features [B, dim] of times ``t`` [B] in [0, 1] (frequencies 1..1000)."""
        half = self.dim // 2
        dt = t.dtype if t.is_floating_point() else torch.float32
        freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), half, device=t.device, dtype=dt))
        ang = t.to(dt)[:, None] * freqs[None, :]
        return torch.cat([ang.sin(), ang.cos()], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, slot_types: torch.Tensor,
                context: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Velocity [B, D] at states ``x`` [B, D] and times ``t`` [B].

        ``slot_types`` int [B, S] (0 = absent slot), ``context`` [B, C], ``present`` bool
        [B, D] (the parameterisation's presence mask).  Absent entries of ``x`` are ignored;
        the velocity of absent entries is meaningless (callers mask or ignore it).
        """
        b, s = slot_types.shape
        if s != self.n_slots or x.shape[1] != SLOT_FEATURES * s + MET_FEATURES:
            raise ValueError(f"expected {self.n_slots} slots and D = {4 * self.n_slots + 2}, "
                             f"got slot types {tuple(slot_types.shape)} and x {tuple(x.shape)}")
        dev = x.device
        xin = torch.where(present, x, torch.zeros_like(x))
        slots = xin[:, : SLOT_FEATURES * s].reshape(b, s, SLOT_FEATURES)
        met = F.pad(xin[:, SLOT_FEATURES * s :], (0, SLOT_FEATURES - MET_FEATURES))
        tokens = torch.cat([slots, met[:, None, :]], dim=1)  # [B, S + 1, 4]
        types = torch.cat(
            [slot_types.long(), torch.full((b, 1), MET_TYPE, dtype=torch.long, device=dev)], dim=1
        )
        index = torch.arange(s + 1, device=dev)
        event = self.time_mlp(self.time_features(t)) + self.ctx_proj(context)  # [B, dim]
        h = self.inp(tokens) + self.type_embed(types) + self.slot_embed(index)[None] + event[:, None]
        pad = torch.cat([slot_types == 0, torch.zeros((b, 1), dtype=torch.bool, device=dev)], dim=1)
        h = self.encoder(h, src_key_padding_mask=pad)
        out = self.out(h)  # [B, S + 1, 4] (bfloat16 under autocast: callers cast)
        return torch.cat([out[:, :s].flatten(1), out[:, s, :MET_FEATURES]], dim=1)


def cfm_loss(field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
             present: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Conditional flow-matching loss: mean squared velocity error per present dimension.

    ``field(x_t, t)`` -> velocity [B, D]; ``x`` float [B, D] standardised data (absent entries
    any value), ``present`` bool [B, D].  ``z ~ N(0, 1)`` and ``t ~ U(0, 1)`` (one per event)
    come from ``generator`` (on ``x``'s device).
    """
    x = torch.where(present, x, torch.zeros_like(x))
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    t = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    xt = (1 - t[:, None]) * z + t[:, None] * x
    err = (field(xt, t) - (x - z)) ** 2
    mask = present.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def integrate(field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor, *,
              steps: int, solver: str = "midpoint") -> torch.Tensor:
    """Solve ``dx/dt = field(x, t)`` from ``x(0) = x0`` [B, D] to ``t = 1`` in ``steps`` equal
    steps of ``solver`` ("euler", "midpoint" or "rk4"); ``field`` gets ``t`` as a [B] tensor.

    Exact for a constant field (every solver) and a field linear in t (midpoint, rk4).
    """
    if solver not in SOLVERS:
        raise ValueError(f"ode_solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if steps < 1:
        raise ValueError(f"ode_steps must be >= 1, got {steps}")
    h = 1.0 / steps
    x = x0

    def at(time: float) -> torch.Tensor:
        return torch.full((x0.shape[0],), time, device=x0.device, dtype=x0.dtype)

    for i in range(steps):
        t0 = i * h
        if solver == "euler":
            x = x + h * field(x, at(t0))
        elif solver == "midpoint":
            k1 = field(x, at(t0))
            x = x + h * field(x + (0.5 * h) * k1, at(t0 + 0.5 * h))
        else:
            k1 = field(x, at(t0))
            k2 = field(x + (0.5 * h) * k1, at(t0 + 0.5 * h))
            k3 = field(x + (0.5 * h) * k2, at(t0 + 0.5 * h))
            k4 = field(x + h * k3, at(t0 + h))
            x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x
