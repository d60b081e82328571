"""Physics-aware kinematic parameterisation of events over fixed object slots (exact inverse).

Events are laid out in **slots**: ``max_jets`` jet slots (``j`` and ``b`` together), then
``max_electrons``, ``max_muons`` and ``max_photons`` slots, each group in descending pT (Dark
Machines order).  Each slot has 4 parameters and each event 2 more (MET), so an event is a
vector ``x`` of ``D = 4 * S + 2`` real numbers (``S`` slots) plus a presence mask:

====================  =============================================================  ==========
slot parameter        definition                                                     inverse
====================  =============================================================  ==========
pT, first in group    ``log(pT - t_g)``, ``t_g`` the group's pT threshold            exp + t_g
pT, later in group    ``logit(r)``, ``r = (pT_k - t_g) / (pT_{k-1} - t_g)`` in (0, 1]  sigmoid
eta                   ``atanh(eta / eta_max_g)``                                     tanh
phi                   ``atanh(dphi / pi')``, ``dphi = wrap(phi - phi_ref + pi)``       tanh
mass                  ``log(max(E / (pT cosh eta) - 1, 1e-6))``                      exp
====================  =============================================================  ==========

and per event ``log(MET)`` and the MET azimuth like an object's phi.  ``phi_ref`` is the azimuth
of the event's first object (Dark Machines order); its own phi parameter is absent (the
generator draws ``phi_ref`` uniformly: the physics is symmetric under a global rotation).  In an
event without objects the MET azimuth is the reference and its parameter is absent.  ``pi' =
pi (1 + 1e-4)`` keeps the map finite at +-pi.

By construction every decoded event has: pT above the group threshold and in descending order
inside each group, ``|eta| < eta_max_g``, phi in (-pi, pi], ``E > pT cosh(eta)``, MET > 0.
Jet separation is not built in: :meth:`Parameterisation.decode` returns, with the events, a
mask of the events whose jets are all at least ``jet_radius`` apart (in the float32 values
written out), and the generator keeps only those (whole-event rejection, counted; nothing is
moved).  Every training event passes (``jet_radius`` is fitted below their smallest
separation), so the round trip events -> parameters -> events is exact.

The (eta, phi) -> (-eta, -phi) symmetry of pp collisions enters through the training data
(:func:`fastmc.models.flow.symmetry.mirror_events`) or the parameterisation
(``canonical_eta_sign``, :mod:`fastmc.models.flow.symmetry`); the azimuthal rotation through
the parameterisation (``phi_ref``).

Exactness limits (float tolerance, :class:`Parameterisation` fields): ratios of equal pTs are
stored as ``1 - ratio_tolerance``, masses below ``mass_floor`` relative as ``mass_floor``, and
values outside the fitted ranges (eta beyond ``eta_max_g``, pT below ``t_g``) are clamped into
them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from fastmc.config import check_config, setting
from fastmc.data.batch import RawBatch
from fastmc.errors import ConfigError
from fastmc.events import GROUP_OF_TYPE
from fastmc.kinematics import sort_dark_machines, wrap_angle
from fastmc.models.flow.separation import jets_separated
from fastmc.models.flow.symmetry import FEATURES_PER_SLOT, orient

__all__ = [
    "FEATURES_PER_SLOT",
    "N_GROUPS",
    "Parameterisation",
    "SlotLayout",
    "fit_parameterisation",
    "sort_dark_machines",
]

N_GROUPS = 4  # jets, electrons, muons, photons
EVENT_FEATURES = 2  # log MET, MET phi
_PI32_BELOW = float(np.nextafter(np.float32(np.pi), np.float32(0)))  # largest float32 < pi
_TOLERANCES = ("ratio_tolerance", "mass_floor", "phi_margin", "eta_tolerance", "canonical_eta_sign")
_GROUP_OF_TYPE = torch.as_tensor(GROUP_OF_TYPE.astype(np.int64))


_wrap = wrap_angle


@dataclasses.dataclass(frozen=True)
class SlotLayout:
    """Number of slots per object group (jets incl. b-jets, electrons, muons, photons)."""

    jets: int = setting(ge=0)
    electrons: int = setting(ge=0)
    muons: int = setting(ge=0)
    photons: int = setting(ge=0)

    def __post_init__(self) -> None:
        check_config(self)
        if self.n_slots == 0:
            raise ConfigError("SlotLayout needs at least one slot")

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        return (self.jets, self.electrons, self.muons, self.photons)

    @property
    def n_slots(self) -> int:
        return sum(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """First slot index of each group."""
        return tuple(int(v) for v in np.cumsum((0, *self.sizes))[:-1])

    @property
    def dim(self) -> int:
        """D, the length of the parameter vector of one event."""
        return FEATURES_PER_SLOT * self.n_slots + EVENT_FEATURES

    def slot_group(self) -> torch.Tensor:
        """Group index (0 jets .. 3 photons) of every slot, int64 [S]."""
        return torch.repeat_interleave(torch.arange(N_GROUPS), torch.tensor(self.sizes))

    def to_slots(
        self, types: torch.Tensor, p4: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scatter objects (Dark Machines order) into slots.

        ``types`` int [B, K], ``p4`` [B, K, 4].  Returns slot types int64 [B, S] (0 = empty),
        slot four-vectors [B, S, 4] and the number of objects dropped per event int64 [B]
        (objects beyond a group's slots, the softest of the group).
        """
        b, _ = types.shape
        types = types.long()
        group = _GROUP_OF_TYPE.to(types.device)[types] - 1  # -1 padding
        slot = torch.full_like(types, -1)
        for g, (off, size) in enumerate(zip(self.offsets, self.sizes, strict=True)):
            m = group == g
            rank = torch.cumsum(m.long(), dim=1) - 1
            keep = m & (rank < size)
            slot = torch.where(keep, off + rank, slot)
        kept = slot >= 0
        dropped = ((types > 0) & ~kept).sum(dim=1)
        s = self.n_slots
        slot_types = torch.zeros(b, s, dtype=torch.long, device=types.device)
        slot_p4 = torch.zeros(b, s, 4, dtype=p4.dtype, device=p4.device)
        bi, ki = kept.nonzero(as_tuple=True)
        slot_types[bi, slot[bi, ki]] = types[bi, ki]
        slot_p4[bi, slot[bi, ki]] = p4[bi, ki]
        return slot_types, slot_p4, dropped

    def from_slots(
        self, slot_types: torch.Tensor, slot_p4: torch.Tensor, max_objects: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather slots back into padded objects (Dark Machines order), width ``max_objects``."""
        present = slot_types > 0
        order = torch.argsort((~present).long(), dim=1, stable=True)[:, :max_objects]
        types = slot_types.gather(1, order)
        p4 = slot_p4.gather(1, order[..., None].expand(-1, -1, 4))
        p4 = torch.where((types > 0)[..., None], p4, torch.zeros_like(p4))
        if max_objects > order.shape[1]:
            pad = max_objects - order.shape[1]
            types = torch.nn.functional.pad(types, (0, pad))
            p4 = torch.nn.functional.pad(p4, (0, 0, 0, pad))
        return types, p4


@dataclasses.dataclass(frozen=True)
class Parameterisation:
    """Fitted constants of the parameterisation (see the module docstring).

    pt_threshold : GeV per group (jets, electrons, muons, photons), below every training pT
    eta_max : per group, above every training |eta|
    jet_radius : smallest allowed (eta, phi) distance between two jets
    ratio_tolerance : pT ratios are stored as at most 1 - ratio_tolerance (1e-6)
    mass_floor : smallest stored E / (pT cosh eta) - 1 (1e-6)
    phi_margin : azimuths are scaled by pi (1 + phi_margin) before atanh (1e-4)
    eta_tolerance : eta / eta_max is clamped to +-(1 - eta_tolerance) before atanh (1e-7)
    canonical_eta_sign : the (eta, phi) -> (-eta, -phi) symmetry in the parameterisation:
        every event is stored in the orientation where its first object has eta >= 0 (all
        angle parameters times the sign s of that eta, the first eta as log of its atanh
        parameter) and decoding takes s as an input, drawn uniformly for new events (False)
    """

    layout: SlotLayout
    pt_threshold: tuple[float, float, float, float]
    eta_max: tuple[float, float, float, float]
    jet_radius: float
    ratio_tolerance: float = 1e-6
    mass_floor: float = 1e-6
    phi_margin: float = 1e-4
    eta_tolerance: float = 1e-7
    canonical_eta_sign: bool = False

    @property
    def phi_scale(self) -> float:
        return math.pi * (1.0 + self.phi_margin)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (GeV)."""
        return {
            "layout": dataclasses.asdict(self.layout),
            "pt_threshold_gev": list(self.pt_threshold),
            "eta_max": list(self.eta_max),
            "jet_radius": self.jet_radius,
            **{k: getattr(self, k) for k in _TOLERANCES},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Parameterisation:
        return cls(
            layout=SlotLayout(**data["layout"]),
            pt_threshold=tuple(float(v) for v in data["pt_threshold_gev"]),  # type: ignore[arg-type]
            eta_max=tuple(float(v) for v in data["eta_max"]),  # type: ignore[arg-type]
            jet_radius=float(data["jet_radius"]),
            **{k: type(getattr(cls, k))(data[k]) for k in _TOLERANCES if k in data},
        )

    # ------------------------------------------------------------------ forward
    def encode(self, raw: RawBatch) -> dict[str, torch.Tensor]:
        """Parameters of a batch of events.

        Returns a dict: ``x`` float64 [B, D] (absent entries 0), ``present`` bool [B, D],
        ``slot_types`` int64 [B, S], ``phi_ref`` float64 [B] (radians) and ``dropped`` int64
        [B] (objects beyond the slots, see :meth:`SlotLayout.to_slots`).
        """
        lay = self.layout
        types, p4 = sort_dark_machines(raw.types.long(), raw.p4)
        slot_types, sp4, dropped = lay.to_slots(types, p4.double())
        dev = sp4.device
        e, pt, eta, phi = sp4.unbind(-1)
        present = slot_types > 0
        group = lay.slot_group().to(dev)
        thr = torch.tensor(self.pt_threshold, dtype=torch.float64, device=dev)[group]
        emax = torch.tensor(self.eta_max, dtype=torch.float64, device=dev)[group]
        first = torch.zeros(lay.n_slots, dtype=torch.bool, device=dev)
        first[list(lay.offsets)] = True
        one = torch.ones_like(pt)
        above = torch.where(present, (pt - thr).clamp_min(1e-9), one)
        prev = torch.cat([one[:, :1], above[:, :-1]], dim=1)
        ratio = (above / prev).clamp(1e-300, 1.0 - self.ratio_tolerance)
        pt_par = torch.where(first, above.log(), ratio.log() - torch.log1p(-ratio))
        clamp = 1.0 - self.eta_tolerance
        eta_par = torch.atanh((eta / emax).clamp(-clamp, clamp))
        n_obj = present.sum(dim=1)
        met = raw.met.double().clamp_min(1e-3)
        met_phi = raw.met_phi.double()
        first_slot = torch.argmax(present.long(), dim=1)
        phi_ref = torch.where(n_obj > 0, phi.gather(1, first_slot[:, None])[:, 0], met_phi)
        phi_par = torch.atanh(_wrap(phi - phi_ref[:, None] + math.pi) / self.phi_scale)
        ratio_m = e / (pt.clamp_min(1e-9) * torch.cosh(eta)) - 1.0
        mass_par = torch.log(ratio_m.clamp_min(self.mass_floor))
        slot_x = torch.stack([pt_par, eta_par, phi_par, mass_par], dim=-1)
        slot_present = present[..., None].expand(-1, -1, FEATURES_PER_SLOT).clone()
        slot_present[torch.arange(len(first_slot), device=dev), first_slot, 2] = False
        slot_present[:, :, 2] &= present
        met_x = torch.stack(
            [met.log(), torch.atanh(_wrap(met_phi - phi_ref + math.pi) / self.phi_scale)], dim=-1
        )
        met_present = torch.stack([torch.ones_like(n_obj > 0), n_obj > 0], dim=-1)
        x = torch.cat([slot_x.flatten(1), met_x], dim=1)
        pres = torch.cat([slot_present.flatten(1), met_present], dim=1)
        sign = torch.ones_like(met)
        if self.canonical_eta_sign:
            eta_first = eta.gather(1, first_slot[:, None])[:, 0]
            sign = torch.where((n_obj > 0) & (eta_first < 0), -1.0, 1.0).to(x.dtype)
            x = orient(x, sign, first_slot, n_obj > 0, n_slots=lay.n_slots, eta_tolerance=self.eta_tolerance, forward=True)
        x = torch.where(pres, x, torch.zeros_like(x))
        return {
            "eta_sign": sign,
            "x": x,
            "present": pres,
            "slot_types": slot_types,
            "phi_ref": phi_ref,
            "dropped": dropped,
        }

    def presence(self, slot_types: torch.Tensor) -> torch.Tensor:
        """The presence mask bool [B, D] implied by slot types int [B, S]."""
        present = slot_types > 0
        b = present.shape[0]
        first_slot = torch.argmax(present.long(), dim=1)
        slot_present = present[..., None].expand(-1, -1, FEATURES_PER_SLOT).clone()
        slot_present[torch.arange(b, device=present.device), first_slot, 2] = False
        has = present.any(dim=1)
        met_present = torch.stack([torch.ones_like(has), has], dim=-1)
        return torch.cat([slot_present.flatten(1), met_present], dim=1)

    # ------------------------------------------------------------------ inverse
    def decode(
        self,
        x: torch.Tensor,
        slot_types: torch.Tensor,
        phi_ref: torch.Tensor,
        *,
        max_objects: int,
        eta_sign: torch.Tensor | None = None,
    ) -> tuple[RawBatch, torch.Tensor]:
        """Events from parameters: the exact inverse of :meth:`encode`.

        ``x`` float [B, D] (absent entries ignored, any value), ``slot_types`` int [B, S],
        ``phi_ref`` [B] radians (draw it uniformly in (-pi, pi] for new events), ``eta_sign``
        [B] of +-1 (with ``canonical_eta_sign`` only: draw it uniformly for new events).  Returns a
        RawBatch (float32, GeV, width ``max_objects``, weight 1, process 0) and ``valid``
        bool [B]: every pair of jets at least ``jet_radius`` apart (nothing is moved; callers
        drop the invalid events).
        """
        lay = self.layout
        dev = x.device
        x = x.double()
        b, s = slot_types.shape
        present = slot_types > 0
        if self.canonical_eta_sign:
            if eta_sign is None:
                raise ValueError("canonical_eta_sign: decode needs eta_sign (+-1 per event)")
            first = torch.argmax(present.long(), dim=1)
            x = orient(
                x, eta_sign.double(), first, present.any(dim=1),
                n_slots=lay.n_slots, eta_tolerance=self.eta_tolerance, forward=False,
            )
        sx = x[:, : FEATURES_PER_SLOT * s].reshape(b, s, FEATURES_PER_SLOT)
        group = lay.slot_group().to(dev)
        thr = torch.tensor(self.pt_threshold, dtype=torch.float64, device=dev)[group]
        emax = torch.tensor(self.eta_max, dtype=torch.float64, device=dev)[group]
        # pT: first of a group exp, later ones times sigmoid(ratio logit), group by group
        factors = torch.where(
            torch.isin(torch.arange(s, device=dev), torch.tensor(lay.offsets, device=dev)),
            sx[..., 0].clamp(max=30.0).exp(),
            torch.sigmoid(sx[..., 0]),
        )
        above = torch.zeros_like(factors)
        for off, size in zip(lay.offsets, lay.sizes, strict=True):
            if size:
                above[:, off : off + size] = torch.cumprod(factors[:, off : off + size], dim=1)
        pt = (above + thr).float()
        eta = (emax * torch.tanh(sx[..., 1])).float()
        dphi = self.phi_scale * torch.tanh(sx[..., 2])
        first_slot = torch.argmax(present.long(), dim=1)
        phi = _wrap(phi_ref.double()[:, None] + dphi - math.pi)
        is_first = torch.zeros_like(present)
        is_first[torch.arange(b, device=dev), first_slot] = True
        phi = torch.where(is_first, phi_ref.double()[:, None].expand_as(phi), phi)
        phi = phi.float().clamp(-_PI32_BELOW, _PI32_BELOW)
        ratio_m = sx[..., 3].clamp(max=30.0).exp()
        e64 = pt.double() * torch.cosh(eta.double()) * (1.0 + ratio_m)
        e = e64.float()
        e = torch.where(e.double() < e64, torch.nextafter(e, torch.full_like(e, math.inf)), e)
        sp4 = torch.stack([e, pt, eta, phi], dim=-1)
        sp4 = torch.where(present[..., None], sp4, torch.zeros_like(sp4))
        types, p4 = lay.from_slots(slot_types, sp4, max_objects)
        has = present.any(dim=1)
        met = x[:, -2].clamp(max=30.0).exp()
        dmet = self.phi_scale * torch.tanh(x[:, -1])
        met_phi = torch.where(has, _wrap(phi_ref.double() + dmet - math.pi), phi_ref.double())
        met_phi = met_phi.float().clamp(-_PI32_BELOW, _PI32_BELOW)
        raw = RawBatch(
            types=types,
            p4=p4,
            met=met.float(),
            met_phi=met_phi,
            weight=torch.ones(b, device=dev),
            process=torch.zeros(b, dtype=torch.long, device=dev),
        )
        return raw, jets_separated(eta, phi, present, n_jets=lay.jets, radius=self.jet_radius)


def fit_parameterisation(
    raw: RawBatch,
    layout: SlotLayout,
    *,
    pt_margin: float = 0.005,
    eta_margin: float = 1e-3,
    radius_margin: float = 1e-3,
    default_jet_radius: float = 0.4,
    default_pt_threshold: float = 10.0,
    default_eta_max: float = 2.5,
    **tolerances: float,
) -> Parameterisation:
    """Fit thresholds from training events ``raw`` (GeV).

    ``t_g = (1 - pt_margin) * min pT`` of group g, ``eta_max_g = max|eta| + eta_margin``,
    ``jet_radius = min dR between two jets - radius_margin`` (``default_jet_radius`` when no
    event has two jets).  Groups absent from the data get ``default_pt_threshold`` (GeV) and
    ``default_eta_max``.  ``tolerances``: the tolerance fields of :class:`Parameterisation`.
    """
    types, p4 = sort_dark_machines(raw.types.long(), raw.p4)
    slot_types, sp4, _ = layout.to_slots(types, p4.double())
    group = _GROUP_OF_TYPE.to(slot_types.device)[slot_types] - 1
    thr, emax = [], []
    for g in range(N_GROUPS):
        m = group == g
        if bool(m.any()):
            thr.append(float(sp4[..., 1][m].min()) * (1.0 - pt_margin))
            emax.append(float(sp4[..., 2][m].abs().max()) + eta_margin)
        else:
            thr.append(default_pt_threshold)
            emax.append(default_eta_max)
    radius = default_jet_radius
    nj = layout.jets
    if nj >= 2:
        jm = group[:, :nj] == 0
        eta, phi = sp4[:, :nj, 2], sp4[:, :nj, 3]
        de = eta[:, :, None] - eta[:, None, :]
        dp = _wrap(phi[:, :, None] - phi[:, None, :])
        dr = torch.sqrt(de * de + dp * dp)
        pair = jm[:, :, None] & jm[:, None, :] & ~torch.eye(nj, dtype=torch.bool, device=jm.device)
        if bool(pair.any()):
            radius = max(float(dr[pair].min()) - radius_margin, 0.0)
    return Parameterisation(
        layout=layout,
        pt_threshold=tuple(thr),  # type: ignore[arg-type]
        eta_max=tuple(emax),  # type: ignore[arg-type]
        jet_radius=radius,
        **tolerances,
    )
