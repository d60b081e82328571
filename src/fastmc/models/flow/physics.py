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
mass                  ``logit(k / k_max_g)``, ``k = m / pT`` from                      sigmoid
                      ``r = max(E / (pT cosh eta) - 1, 1e-6)``: ``k = cosh(eta) sqrt(r (2 + r))``
                      (``log r`` without a fitted ``k_max_g``: models before it)      (exp)
====================  =============================================================  ==========

and per event ``log(MET)`` and the MET azimuth like an object's phi.  ``phi_ref`` is the azimuth
of the event's first object (Dark Machines order); its own phi parameter is absent (the
generator draws ``phi_ref`` uniformly: the physics is symmetric under a global rotation).  In an
event without objects the MET azimuth is the reference and its parameter is absent.  ``pi' =
pi (1 + 1e-4)`` keeps the map finite at +-pi.

By construction every decoded event has: pT above the group threshold and in descending order
inside each group, ``|eta| < eta_max_g``, phi in (-pi, pi], ``E > pT cosh(eta)``, MET > 0.
Jet separation: with ``jet_azimuth="allowed"`` it is built in: the azimuth parameter of every
jet after the first is its position in the azimuths its harder jets allow (rapidity y and phi,
:mod:`fastmc.models.flow.azimuth`), decoded jet by jet in slot order.  With ``"reference"``
(the plain azimuth above) it is not.  Either way :meth:`Parameterisation.decode` returns, with
the events, a mask of the events whose jets are all at least ``jet_radius`` apart (in the
float32 values written out; "allowed": in (y, phi) to 1e-6 rad, and a jet with no allowed
azimuth at all), and the generator keeps only those (whole-event rejection, counted; nothing is
moved).  Every training event passes (``jet_radius`` is fitted below their smallest
separation), so the round trip events -> parameters -> events is exact.

Isolation from jets: with ``isolation_radius`` (fitted per group, "allowed" only) the azimuth
parameter of every electron, muon and photon in an event with jets is likewise its position in
the azimuths that keep it at least its group's radius from every jet (in (y, phi)), decoded
after the jets.  In Monte Carlo and in the Dark Machines files an electron or photon is never
closer than the jet radius to a jet (a jet that contains one is dropped by the detector
simulation's overlap removal); the radius of a group is fitted like the jet radius (the
``radius_quantile`` quantile of its training objects' distances to their nearest jet), so
muons, which are only isolated and do come close to jets, get a radius near 0.

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
from fastmc.models.flow.azimuth import (
    exclusion_intervals,
    from_unit,
    gap_table,
    jet_rapidity,
    to_unit,
)
from fastmc.models.flow.separation import jets_separated
from fastmc.models.flow.symmetry import FEATURES_PER_SLOT, orient

__all__ = [
    "FEATURES_PER_SLOT",
    "N_GROUPS",
    "Parameterisation",
    "SlotLayout",
    "fit_parameterisation",
    "jets_below_radius",
    "objects_below_isolation",
    "sort_dark_machines",
]

N_GROUPS = 4  # jets, electrons, muons, photons
_MUONS = 2  # the muons' group
EVENT_FEATURES = 2  # log MET, MET phi
_PI32_BELOW = float(np.nextafter(np.float32(np.pi), np.float32(0)))  # largest float32 < pi
_TOLERANCES = (
    "ratio_tolerance", "mass_floor", "phi_margin", "eta_tolerance", "canonical_eta_sign",
    "jet_azimuth", "jet_edge_width", "jet_edge_power", "separation_tolerance",
)
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
    jet_radius : smallest allowed distance between two jets, in (eta, phi) with
        ``jet_azimuth="reference"``, in (rapidity y, phi) with "allowed"
    ratio_tolerance : pT ratios are stored as at most 1 - ratio_tolerance (1e-6)
    mass_floor : smallest stored E / (pT cosh eta) - 1 (1e-6)
    phi_margin : azimuths are scaled by pi (1 + phi_margin) before atanh (1e-4)
    eta_tolerance : eta / eta_max is clamped to +-(1 - eta_tolerance) before atanh (1e-7)
    canonical_eta_sign : the (eta, phi) -> (-eta, -phi) symmetry in the parameterisation:
        every event is stored in the orientation where its first object has eta >= 0 (all
        angle parameters times the sign s of that eta, the first eta as log of its atanh
        parameter) and decoding takes s as an input, drawn uniformly for new events (False)
    jet_azimuth : "reference" (the azimuth parameter of every object is its angle to the
        first object; separation checked and rejected) or "allowed": the azimuth of every jet
        after the first is its position in the set its harder jets allow
        (:mod:`fastmc.models.flow.azimuth`), so every pair of jets is at least
        ``jet_radius`` apart by construction
    jet_edge_width, jet_edge_power : the density of a jet falls to 0 at distance
        ``jet_radius`` from a harder jet as (d / rho)^power, d the azimuthal distance to the
        excluded interval and rho where the (y, phi) distance reaches ``jet_radius +
        jet_edge_width`` (:mod:`fastmc.models.flow.azimuth`; "allowed" only; width 0 = no fall)
    separation_tolerance : radians; with "allowed", the built-in separation is checked on the
        float32 azimuths written out against ``jet_radius`` minus this (1e-6)
    mass_max : per group, the largest m / pT a decoded object can have (the mass parameter
        is then a logit of m / pT, so no object is heavier); None: unbounded (``log`` of
        E / (pT cosh eta) - 1, models saved before it)
    isolation_radius : per group (the jets' entry unused), the smallest (y, phi) distance of an
        electron, muon or photon to any jet: its azimuth is placed in the set the jets allow
        (same edge weight as the jets'; a radius of 0 places nothing); None: not built in
        (models saved before it); "allowed" only
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
    jet_azimuth: str = "reference"
    jet_edge_width: float = 0.0
    jet_edge_power: float = 1.0
    separation_tolerance: float = 1e-6
    mass_max: tuple[float, float, float, float] | None = None
    isolation_radius: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.jet_azimuth not in ("reference", "allowed"):
            raise ConfigError(f"jet_azimuth must be 'reference' or 'allowed', not {self.jet_azimuth!r}")
        if self.jet_edge_width < 0:
            raise ConfigError(f"jet_edge_width must be >= 0 radians, not {self.jet_edge_width}")
        if self.jet_edge_power <= 0:
            raise ConfigError(f"jet_edge_power must be > 0, not {self.jet_edge_power}")

    def _mass_bound(self, group: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """k_max = the largest m / pT of every slot [S] (``mass_max`` by group), float64."""
        return torch.tensor(self.mass_max, dtype=torch.float64, device=like.device)[group]

    def _mass_parameter(
        self, ratio: torch.Tensor, eta: torch.Tensor, group: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mass parameter, the ratio r = E / (pT cosh eta) - 1 it decodes to) [B, S] of
        measured ratios (r at least ``mass_floor``; with ``mass_max``, m / pT below it by the
        ratio tolerance)."""
        ratio = ratio.clamp_min(self.mass_floor)
        if self.mass_max is None:
            return torch.log(ratio), ratio
        bound = self._mass_bound(group, ratio)
        k = torch.cosh(eta) * torch.sqrt(ratio * (2.0 + ratio))  # m / pT
        scaled = torch.minimum(k / bound, torch.full_like(k, 1.0 - self.ratio_tolerance))
        return torch.log(scaled) - torch.log1p(-scaled), _ratio_of(scaled * bound, eta)

    @property
    def allowed_azimuth(self) -> bool:
        """Jet azimuths in the allowed set (``jet_azimuth == "allowed"``) with two jet slots or more."""
        return self.jet_azimuth == "allowed" and self.layout.jets >= 2

    def isolated_slots(self) -> list[tuple[int, float]]:
        """(slot, radius) of every electron, muon and photon slot placed outside the jets
        (``isolation_radius`` > 0 of its group, with the allowed jet azimuths)."""
        if self.isolation_radius is None or not self.allowed_azimuth:
            return []
        group = self.layout.slot_group().tolist()
        return [(k, float(self.isolation_radius[g])) for k, g in enumerate(group)
                if g > 0 and self.isolation_radius[g] > 0]

    def _isolated_objects(
        self, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Every isolated object of an event with jets, all slots at once: (event index [N],
        slot index [N], radius float64 [N, 1]) from the presence bool [B, S]; None if none."""
        slots = self.isolated_slots()
        if not slots:
            return None
        dev = present.device
        ks = torch.tensor([k for k, _ in slots], device=dev)
        radii = torch.tensor([r for _, r in slots], dtype=torch.float64, device=dev)
        has_jet = present[:, : self.layout.jets].any(dim=1)
        rows, j = (present[:, ks] & has_jet[:, None]).nonzero(as_tuple=True)
        if len(rows) == 0:
            return None
        return rows, ks[j], radii[j][:, None]

    def _object_gaps(self, s_jets: torch.Tensor, dy: torch.Tensor, jets: torch.Tensor,
                     radius: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """Allowed gaps of objects at rapidity differences ``dy`` [N, J] from the jets at
        azimuths ``s_jets`` [N, J] (present: ``jets`` bool [N, J]), kept ``radius`` (a float or
        [N, 1]) away."""
        intervals = exclusion_intervals(s_jets, dy, jets, radius=radius, edge_width=self.jet_edge_width)
        return gap_table(*intervals, edge_power=self.jet_edge_power)

    def _jet_gaps(self, s: torch.Tensor, y: torch.Tensor, present: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """Allowed gaps for jet slot ``k`` given the harder jets' azimuths ``s`` [B, >=k] (the
        parameterisation's (-pi, pi] angle to the first object + pi), rapidities ``y`` [B, J]
        and presence [B, J]."""
        dy = y[:, k : k + 1] - y[:, :k]
        intervals = exclusion_intervals(s[:, :k], dy, present[:, :k], radius=self.jet_radius,
                                        edge_width=self.jet_edge_width)
        return gap_table(*intervals, edge_power=self.jet_edge_power)

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
            **({} if self.mass_max is None else {"mass_max": list(self.mass_max)}),
            **({} if self.isolation_radius is None
               else {"isolation_radius": list(self.isolation_radius)}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Parameterisation:
        return cls(
            layout=SlotLayout(**data["layout"]),
            pt_threshold=tuple(float(v) for v in data["pt_threshold_gev"]),  # type: ignore[arg-type]
            eta_max=tuple(float(v) for v in data["eta_max"]),  # type: ignore[arg-type]
            jet_radius=float(data["jet_radius"]),
            mass_max=tuple(float(v) for v in data["mass_max"]) if data.get("mass_max") else None,  # type: ignore[arg-type]
            isolation_radius=(tuple(float(v) for v in data["isolation_radius"])  # type: ignore[arg-type]
                              if data.get("isolation_radius") else None),
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
        s_ref = _wrap(phi - phi_ref[:, None] + math.pi)
        phi_par = torch.atanh(s_ref / self.phi_scale)
        mass_par, ratio_m = self._mass_parameter(e / (pt.clamp_min(1e-9) * torch.cosh(eta)) - 1.0, eta, group)
        if self.allowed_azimuth:
            nj = lay.jets
            y = jet_rapidity(eta[:, :nj], ratio_m[:, :nj])
            for k in range(1, nj):
                rows = present[:, k].nonzero()[:, 0]
                if len(rows) == 0:
                    break
                u, _ = to_unit(s_ref[rows, k], self._jet_gaps(s_ref[rows], y[rows], present[rows], k))
                phi_par[rows, k] = torch.atanh((2.0 * u - 1.0) / (1.0 + self.phi_margin))
            found = self._isolated_objects(present)
            if found is not None:
                rows, k, radius = found
                dy = jet_rapidity(eta[rows, k], ratio_m[rows, k])[:, None] - y[rows]
                gaps = self._object_gaps(s_ref[rows, :nj], dy, present[rows, :nj], radius)
                u, _ = to_unit(s_ref[rows, k], gaps)
                phi_par[rows, k] = torch.atanh((2.0 * u - 1.0) / (1.0 + self.phi_margin))
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
        is_first = torch.zeros_like(present)
        is_first[torch.arange(b, device=dev), first_slot] = True
        if self.mass_max is None:
            ratio_m = sx[..., 3].clamp(max=30.0).exp()
        else:
            ratio_m = _ratio_of(self._mass_bound(group, sx) * torch.sigmoid(sx[..., 3]), eta.double())
        placed = torch.ones(b, dtype=torch.bool, device=dev)
        y_jets = None
        if self.allowed_azimuth:
            nj = lay.jets
            y_jets = jet_rapidity(eta[:, :nj].double(), ratio_m[:, :nj])
            unit = 0.5 * (torch.tanh(sx[:, :nj, 2]) * (1.0 + self.phi_margin) + 1.0)
            s_dec = torch.where(is_first[:, :nj], torch.full_like(unit, math.pi), dphi[:, :nj])
            for k in range(1, nj):
                rows = present[:, k].nonzero()[:, 0]  # only events that have a jet k
                if len(rows) == 0:
                    break  # jets fill the slots in order: no event has a jet k or beyond
                gaps = self._jet_gaps(s_dec[rows], y_jets[rows], present[rows], k)
                s_dec[rows, k] = from_unit(unit[rows, k], gaps)
                placed[rows] &= gaps["weight"].sum(dim=-1) > 0
            dphi = torch.cat([s_dec, dphi[:, nj:]], dim=1)
            found = self._isolated_objects(present)
            if found is not None:  # after every jet is placed
                rows, k, radius = found
                dy = jet_rapidity(eta[rows, k].double(), ratio_m[rows, k])[:, None] - y_jets[rows]
                gaps = self._object_gaps(s_dec[rows], dy, present[rows, :nj], radius)
                u_k = 0.5 * (torch.tanh(sx[rows, k, 2]) * (1.0 + self.phi_margin) + 1.0)
                dphi[rows, k] = from_unit(u_k, gaps)
                placed[rows[gaps["weight"].sum(dim=-1) <= 0]] = False
        phi = _wrap(phi_ref.double()[:, None] + dphi - math.pi)
        phi = torch.where(is_first, phi_ref.double()[:, None].expand_as(phi), phi)
        phi = phi.float().clamp(-_PI32_BELOW, _PI32_BELOW)
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
        if y_jets is None:
            return raw, jets_separated(eta, phi, present, n_jets=lay.jets, radius=self.jet_radius)
        # built in: checked in float64 (y) and the float32 azimuths written out, to a rounding margin
        separated = jets_separated(
            y_jets, phi[:, : lay.jets], present, n_jets=lay.jets, radius=self.jet_radius - self.separation_tolerance
        )
        return raw, placed & separated


def _ratio_of(k: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """E / (pT cosh eta) - 1 of objects with m / pT = ``k`` at pseudorapidity ``eta`` (any
    shape, float64): sqrt(1 + x^2) - 1 with x = k / cosh(eta), written without cancellation."""
    x2 = (k / torch.cosh(eta)) ** 2
    return x2 / (torch.sqrt(1.0 + x2) + 1.0)


def _slot_rapidity(sp4: torch.Tensor, mass_floor: float) -> torch.Tensor:
    """Rapidity y of slot four-vectors ``sp4`` [..., 4] (GeV), float64, from E / (pT cosh eta) - 1
    floored at ``mass_floor`` as the parameterisation stores it."""
    e, pt, eta, _ = (v.double() for v in sp4.unbind(-1))
    return jet_rapidity(eta, (e / (pt.clamp_min(1e-9) * torch.cosh(eta)) - 1.0).clamp_min(mass_floor))


def _closest_jet_pairs(sp4: torch.Tensor, slot_types: torch.Tensor, n_jets: int, *,
                       rapidity: bool, mass_floor: float) -> torch.Tensor:
    """dR of the closest pair of jets per event, float64 [B] (inf with fewer than two jets),
    from slot four-vectors ``sp4`` [B, S, 4] (GeV; jets in the first ``n_jets`` slots); in
    (y, phi) with ``rapidity`` (y from E / (pT cosh eta) - 1 floored at ``mass_floor``, as
    the parameterisation stores it), else (eta, phi)."""
    e, _, eta, phi = (v[:, :n_jets].double() for v in sp4.unbind(-1))
    if rapidity:
        eta = _slot_rapidity(sp4[:, :n_jets], mass_floor)
    i, k = torch.triu_indices(n_jets, n_jets, 1, device=eta.device)
    dp = (phi[:, k] - phi[:, i]).abs()
    dp = torch.minimum(dp, 2 * math.pi - dp)
    dr = torch.sqrt((eta[:, k] - eta[:, i]) ** 2 + dp * dp)
    jets = slot_types[:, :n_jets] > 0
    dr = torch.where(jets[:, k] & jets[:, i], dr, torch.full_like(dr, math.inf))
    return dr.min(dim=1).values if dr.shape[1] else torch.full_like(e[:, 0], math.inf)


def _nearest_jet(sp4: torch.Tensor, slot_types: torch.Tensor, n_jets: int, *,
                 mass_floor: float) -> torch.Tensor:
    """(y, phi) distance of every slot's object to its nearest jet, float64 [B, S] (inf for
    absent objects and events without jets; y from :func:`_slot_rapidity`)."""
    phi = sp4[..., 3].double()
    if n_jets == 0:
        return torch.full_like(phi, math.inf)
    y = _slot_rapidity(sp4, mass_floor)
    dp = (phi[:, :, None] - phi[:, None, :n_jets]).abs()
    dp = torch.minimum(dp, 2 * math.pi - dp)
    dr = torch.sqrt((y[:, :, None] - y[:, None, :n_jets]) ** 2 + dp * dp)
    present = slot_types > 0
    dr = torch.where(present[:, :, None] & present[:, None, :n_jets], dr, torch.full_like(dr, math.inf))
    return dr.min(dim=2).values


def objects_below_isolation(raw: RawBatch, par: Parameterisation) -> int:
    """Number of electrons, muons and photons of ``raw`` (GeV) closer to a jet than their
    group's ``isolation_radius``: with a quantile-fitted radius, the training objects that
    are encoded at the radius (0 when isolation is not built in)."""
    slots = par.isolated_slots()
    if not slots:
        return 0
    lay = par.layout
    types, p4 = sort_dark_machines(raw.types.long(), raw.p4)
    slot_types, sp4, _ = lay.to_slots(types, p4.double())
    near = _nearest_jet(sp4, slot_types, lay.jets, mass_floor=par.mass_floor)
    return sum(int((near[:, k] < radius).sum()) for k, radius in slots)


def jets_below_radius(raw: RawBatch, par: Parameterisation) -> int:
    """Number of events of ``raw`` (GeV) with two jets closer than ``par.jet_radius`` (in
    (y, phi) with ``jet_azimuth="allowed"``, else (eta, phi)): with a quantile-fitted radius,
    the training events whose softer jet is encoded at the radius."""
    lay = par.layout
    if lay.jets < 2:
        return 0
    types, p4 = sort_dark_machines(raw.types.long(), raw.p4)
    slot_types, sp4, _ = lay.to_slots(types, p4.double())
    closest = _closest_jet_pairs(sp4, slot_types, lay.jets, rapidity=par.jet_azimuth == "allowed",
                                 mass_floor=par.mass_floor)
    return int((closest < par.jet_radius).sum())


def fit_parameterisation(
    raw: RawBatch,
    layout: SlotLayout,
    *,
    pt_margin: float = 0.005,
    eta_margin: float = 1e-3,
    radius_margin: float = 1e-3,
    radius_quantile: float = 0.0,
    mass_margin: float = 0.0,
    isolation: bool = False,
    muon_isolation_quantile: float | None = None,
    default_jet_radius: float = 0.4,
    default_pt_threshold: float = 10.0,
    default_eta_max: float = 2.5,
    **tolerances: float,
) -> Parameterisation:
    """Fit thresholds from training events ``raw`` (GeV).

    ``t_g = (1 - pt_margin) * min pT`` of group g, ``eta_max_g = max|eta| + eta_margin``,
    ``jet_radius = min dR between two jets - radius_margin`` (``default_jet_radius`` when no
    event has two jets; dR in (eta, phi), or in (y, phi) with ``jet_azimuth="allowed"``).
    With ``radius_quantile`` q > 0 the minimum is replaced by the ``q`` quantile of the
    events' closest-pair dR (numpy's "lower" method: the minimum while q x events < 1), so
    that a handful of pairs the detector smeared below R does not set the radius; those
    events' softer jets are then encoded at the radius (count them with
    :func:`jets_below_radius`).  ``mass_margin`` m > 0 bounds the mass parameter:
    ``mass_max_g = m * max(m / pT)`` over the training objects of group g (their ratio
    E / (pT cosh eta) - 1 at least ``mass_floor``; groups absent from the data: 1e30); 0:
    unbounded.  ``isolation`` (with ``jet_azimuth="allowed"``): ``isolation_radius_g`` =
    the ``radius_quantile`` quantile of the (y, phi) distances of the training objects of
    group g to their nearest jet, less ``radius_margin`` (0 for a group with no object next
    to a jet; muons: the ``muon_isolation_quantile`` quantile when given); count the objects
    below with :func:`objects_below_isolation`.  Groups absent
    from the data get ``default_pt_threshold`` (GeV) and ``default_eta_max``.
    ``tolerances``: the tolerance fields of :class:`Parameterisation`.
    """
    types, p4 = sort_dark_machines(raw.types.long(), raw.p4)
    slot_types, sp4, _ = layout.to_slots(types, p4.double())
    group = _GROUP_OF_TYPE.to(slot_types.device)[slot_types] - 1
    thr, emax, kmax = [], [], []
    floor = float(tolerances.get("mass_floor", Parameterisation.mass_floor))
    ratio = (sp4[..., 0] / (sp4[..., 1].clamp_min(1e-9) * torch.cosh(sp4[..., 2])) - 1.0).clamp_min(floor)
    m_over_pt = torch.cosh(sp4[..., 2]) * torch.sqrt(ratio * (2.0 + ratio))
    for g in range(N_GROUPS):
        m = group == g
        if bool(m.any()):
            thr.append(float(sp4[..., 1][m].min()) * (1.0 - pt_margin))
            emax.append(float(sp4[..., 2][m].abs().max()) + eta_margin)
            kmax.append(mass_margin * float(m_over_pt[m].max()))
        else:
            thr.append(default_pt_threshold)
            emax.append(default_eta_max)
            kmax.append(1e30)
    radius = default_jet_radius
    nj = layout.jets
    if nj >= 2:
        allowed = tolerances.get("jet_azimuth", "reference") == "allowed"  # (y, phi), else (eta, phi)
        closest = _closest_jet_pairs(sp4, slot_types, nj, rapidity=allowed, mass_floor=floor)
        closest = closest[torch.isfinite(closest)]
        if len(closest):
            lowest = float(np.quantile(closest.numpy(), radius_quantile, method="lower"))
            radius = max(lowest - radius_margin, 0.0)
    iso = None
    if isolation and tolerances.get("jet_azimuth", "reference") == "allowed" and nj >= 2:
        near = _nearest_jet(sp4, slot_types, nj, mass_floor=floor)
        iso = [0.0]
        for g in range(1, N_GROUPS):
            d = near[group == g]
            d = d[torch.isfinite(d)]
            q = (muon_isolation_quantile if g == _MUONS and muon_isolation_quantile is not None
                 else radius_quantile)
            low = float(np.quantile(d.numpy(), q, method="lower")) if len(d) else 0.0
            iso.append(max(low - radius_margin, 0.0))
    return Parameterisation(
        layout=layout,
        pt_threshold=tuple(thr),  # type: ignore[arg-type]
        eta_max=tuple(emax),  # type: ignore[arg-type]
        jet_radius=radius,
        mass_max=tuple(kmax) if mass_margin > 0 else None,  # type: ignore[arg-type]
        isolation_radius=None if iso is None else tuple(iso),  # type: ignore[arg-type]
        **tolerances,
    )
