"""Whole-event features: every object, every jet pair and triplet, as a classifier sees them.

The recipe of the field's event-generation papers (L-GATr / LLoCa conditional flow matching on
ttbar + jets, arXiv:2405.14806; discriminator diagnostics, arXiv:2305.16774): a classifier
that sees only a projection (MET, the two leading jets, HT) is blind to soft jets, b-tag
placement, charges and pile-ups at a cut.  :func:`whole_event_features` turns every event into
one float64 row that holds

- every jet (j or b, by descending pT) up to ``n_jets``: log pT, eta, azimuth relative to the
  leading object, log(1 + mass), b tag;
- every lepton (e or mu, by descending pT) up to ``n_leptons``: log pT, eta, relative azimuth,
  flavour (0 electron, 1 muon), charge (+-1);
- every photon up to ``n_photons``: log pT, eta, relative azimuth;
- dR and invariant mass of every pair of the leading ``n_pair_jets`` jets, the invariant mass of
  every triplet of the leading ``n_triplet_jets`` jets (top candidates);
- dR of each of the leading leptons to each of the leading ``n_lepton_jets`` jets, the closest
  jet pair's dR (all jets) and the closest lepton-jet dR;
- log MET and the MET azimuth relative to the leading object; log HT; the multiplicities
  (jets, b jets, electrons, muons, photons), the total lepton charge and the group of the
  leading object (1 jet, 2 electron, 3 muon, 4 photon).

Units: ``log pT`` is ln(pT / GeV), ``log(1 + m)`` is ln(1 + m / GeV), masses in GeV, angles
in radians; dR, eta, counts and flags unitless.  Azimuth enters **only as differences**
(wrapped into (-pi, pi]): a global rotation of an event is an exact symmetry of the physics,
and an absolute phi would let a classifier score a generator on detector-irrelevant noise.
The "leading object" is the highest-pT object of any type.  Lepton and photon masses are
left out: physically zero, they are only the rounding of the file format (six printed digits
in Dark Machines CSV, float32 in parquet), which a classifier would otherwise learn.

A feature whose object does not exist (the fifth jet of a four-jet event) is **NaN**: gradient
boosting handles it natively, and :func:`fill_missing` turns it into 0 plus a presence column
for networks.  The table in ``docs/evaluation.md`` lists every feature with its unit.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import numpy as np

from fastmc.evaluate.observables import ColumnTable
from fastmc.events import ETA, GROUP_OF_TYPE, PHI, PT, TYPE_CODES, E, Events, wrap_phi

__all__ = [
    "FeatureConfig",
    "WholeEventFeatures",
    "closest_jet_pair_dr",
    "fill_missing",
    "whole_event_features",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """How many objects the whole-event features hold (keyword-only, validated).

    ``n_jets``/``n_leptons``/``n_photons``: object slots per type (objects beyond are seen
    only through the multiplicities, HT and the closest-pair dR); ``n_pair_jets``: leading jets
    whose pairwise dR and masses enter; ``n_triplet_jets``: leading jets whose three-jet masses
    enter; ``n_lepton_jets``: leading jets whose dR to each lepton slot enters.
    """

    n_jets: int = 8
    n_leptons: int = 3
    n_photons: int = 2
    n_pair_jets: int = 6
    n_triplet_jets: int = 6
    n_lepton_jets: int = 4

    def __post_init__(self) -> None:
        for name in ("n_jets", "n_leptons", "n_photons", "n_pair_jets", "n_triplet_jets", "n_lepton_jets"):
            if getattr(self, name) < 0:
                raise ValueError(f"FeatureConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("n_pair_jets", "n_triplet_jets", "n_lepton_jets"):
            if getattr(self, name) > self.n_jets:
                raise ValueError(
                    f"FeatureConfig.{name} = {getattr(self, name)} exceeds n_jets = {self.n_jets}"
                )


@dataclasses.dataclass(frozen=True, eq=False)
class WholeEventFeatures(ColumnTable):
    """Whole-event features of ``N`` events.

    ``names``/``units`` [D] (units: ``"ln GeV"``, ``"GeV"``, ``"rad"`` or ``""``), ``values``
    float64 [N, D] (NaN where the object is missing), ``weight`` float64 [N], ``n_jets`` int
    [N] (all jets, j and b).
    """

    _kind: ClassVar[str] = "whole-event feature"
    _row_fields: ClassVar[tuple[str, ...]] = ("values", "weight", "n_jets")

    names: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray
    weight: np.ndarray
    n_jets: np.ndarray


def _sorted_slots(events: Events, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [N, k] of the ``k`` highest-pT slots in ``mask`` and their existence [N, k]."""
    n, width = mask.shape
    pt = np.where(mask, events.p4[..., PT].astype(np.float64), -np.inf)
    order = np.argsort(-pt, axis=1, kind="stable")
    if k > width:
        order = np.concatenate([order, np.zeros((n, k - width), np.int64)], axis=1)
    idx = order[:, :k]
    exists = np.arange(k)[None, :] < mask.sum(axis=1)[:, None]
    return idx, exists


def _gather(events: Events, idx: np.ndarray, exists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E, pT, eta, phi) float64 [N, k, 4] and type codes int [N, k] of the chosen slots, NaN /
    0 where missing."""
    p4 = np.take_along_axis(events.p4, idx[..., None], axis=1).astype(np.float64)
    types = np.take_along_axis(events.types.astype(np.int64), idx, axis=1)
    return np.where(exists[..., None], p4, np.nan), np.where(exists, types, 0)


def _cartesian(p4: np.ndarray) -> np.ndarray:
    e, pt, eta, phi = (p4[..., i] for i in (E, PT, ETA, PHI))
    return np.stack([e, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)


def _mass(c: np.ndarray) -> np.ndarray:
    """sqrt(max(m^2, 0)) of cartesian four-vectors [..., 4], NaN stays NaN."""
    m2 = c[..., 0] ** 2 - (c[..., 1] ** 2 + c[..., 2] ** 2 + c[..., 3] ** 2)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(np.isnan(m2), np.nan, np.clip(m2, 0, None)))


def _abs_dphi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|phi_a - phi_b| wrapped into [0, pi] (radians, broadcast; NaN stays NaN): equal to
    ``abs(wrap_phi(a - b))`` to rounding, without its remainder for angles already in
    (-pi, pi] (the features' hot spot)."""
    d = np.abs(a - b)
    with np.errstate(invalid="ignore"):
        if np.fmax.reduce(d, axis=None, initial=0.0) > 2 * np.pi:  # an angle outside (-pi, pi]
            d = np.remainder(d, 2 * np.pi)
        return np.where(d > np.pi, 2 * np.pi - d, d)


def _dr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dR of (E, pT, eta, phi) arrays broadcast against each other."""
    return np.hypot(a[..., ETA] - b[..., ETA], _abs_dphi(a[..., PHI], b[..., PHI]))


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.where(x > 0, x, np.nan))


def _rapidity(p4: np.ndarray) -> np.ndarray:
    """Rapidity y = atanh(pz / E) of (E, pT, eta, phi) arrays [..., 4] (|pz / E| clipped below
    1, so a massless object rounded to E < |p| gets a finite y close to its eta)."""
    pz = p4[..., PT] * np.sinh(p4[..., ETA])
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.clip(pz / p4[..., E], -1.0 + 1e-15, 1.0 - 1e-15)
    return np.arctanh(beta)


def closest_jet_pair_dr(events: Events, *, rapidity: bool = False) -> np.ndarray:
    """dR of the closest pair of jets (j or b, all of them) per event, float64 [N]; NaN in
    events with fewer than two jets.  dR = sqrt(d_eta^2 + d_phi^2), d_phi wrapped; with
    ``rapidity`` the rapidity y = atanh(pz / E) replaces eta (the distance anti-kT uses)."""
    jmask = events.mask("j", "b")
    out = np.full(len(events), np.nan)
    counts = jmask.sum(axis=1)
    if int(counts.max(initial=0)) < 2:
        return out
    # the smallest distance does not depend on the jets' order: no pT sort, only the jets
    # moved to the front of the slots where they are not there already (Dark Machines order
    # and fastmc's output have them first)
    width = int(np.flatnonzero(jmask.any(axis=0))[-1]) + 1
    k = int(counts.max())
    if width > k:
        front = np.argsort(~jmask, axis=1, kind="stable")[:, :k]
        p4 = np.take_along_axis(events.p4, front[..., None], axis=1).astype(np.float64)
        jmask = np.take_along_axis(jmask, front, axis=1)
    else:
        p4 = events.p4[:, :k].astype(np.float64)
        jmask = jmask[:, :k]
    with np.errstate(invalid="ignore", divide="ignore"):
        eta = np.where(jmask, _rapidity(p4) if rapidity else p4[..., ETA], np.nan)
        phi = np.where(jmask, p4[..., PHI], np.nan)
        # the smallest dR^2 over the pairs (fmin skips the NaN of missing jets), one sqrt
        best = np.full(len(events), np.nan)
        for i in range(k - 1):
            d2 = (eta[:, i : i + 1] - eta[:, i + 1 :]) ** 2
            d2 += _abs_dphi(phi[:, i : i + 1], phi[:, i + 1 :]) ** 2
            np.fmin(best, np.fmin.reduce(d2, axis=1), out=best)
        return np.sqrt(best)


def whole_event_features(events: Events, config: FeatureConfig | None = None) -> WholeEventFeatures:
    """The whole-event feature vector of every event (see the module docstring).

    ``events``: :class:`~fastmc.events.Events` in GeV (any object order).  Returns
    :class:`WholeEventFeatures` with ``values`` float64 [N, D]; D depends only on ``config``.
    Unknown type codes count as nothing (physicality reports them).
    """
    cfg = config or FeatureConfig()
    n = len(events)
    cols: dict[str, tuple[np.ndarray, str]] = {}
    t_all = events.types.astype(np.int64)
    real = (t_all >= 1) & (t_all < len(GROUP_OF_TYPE))
    lead_idx, lead_exists = _sorted_slots(events, real, 1)
    lead, lead_t = _gather(events, lead_idx, lead_exists)
    lead_phi = lead[:, 0, PHI]

    def rel_phi(phi: np.ndarray) -> np.ndarray:
        return wrap_phi(phi - lead_phi.reshape((-1,) + (1,) * (phi.ndim - 1)))

    jmask = events.mask("j", "b")
    lmask = events.mask("e-", "e+", "m-", "m+")
    gmask = events.mask("g")
    with np.errstate(invalid="ignore"):
        # jets
        jidx, jex = _sorted_slots(events, jmask, cfg.n_jets)
        jets, jt = _gather(events, jidx, jex)
        jc = _cartesian(jets)
        jmass = _mass(jc)
        jdphi = rel_phi(jets[..., PHI])
        for i in range(cfg.n_jets):
            cols[f"jet{i + 1}_logpt"] = (_log(jets[:, i, PT]), "ln GeV")
            cols[f"jet{i + 1}_eta"] = (jets[:, i, ETA], "")
            cols[f"jet{i + 1}_dphi"] = (jdphi[:, i], "rad")
            cols[f"jet{i + 1}_logm"] = (np.log1p(jmass[:, i]), "ln GeV")
            cols[f"jet{i + 1}_btag"] = (np.where(jex[:, i], (jt[:, i] == TYPE_CODES["b"]).astype(float), np.nan), "")
        # leptons
        lidx, lex = _sorted_slots(events, lmask, cfg.n_leptons)
        leps, lt = _gather(events, lidx, lex)
        ldphi = rel_phi(leps[..., PHI])
        is_mu = np.isin(lt, [TYPE_CODES["m-"], TYPE_CODES["m+"]]).astype(float)
        charge = np.where(np.isin(lt, [TYPE_CODES["e-"], TYPE_CODES["m-"]]), -1.0, 1.0)
        for i in range(cfg.n_leptons):
            cols[f"lep{i + 1}_logpt"] = (_log(leps[:, i, PT]), "ln GeV")
            cols[f"lep{i + 1}_eta"] = (leps[:, i, ETA], "")
            cols[f"lep{i + 1}_dphi"] = (ldphi[:, i], "rad")
            cols[f"lep{i + 1}_muon"] = (np.where(lex[:, i], is_mu[:, i], np.nan), "")
            cols[f"lep{i + 1}_charge"] = (np.where(lex[:, i], charge[:, i], np.nan), "")
        # photons
        gidx, gex = _sorted_slots(events, gmask, cfg.n_photons)
        phos, _ = _gather(events, gidx, gex)
        gdphi = rel_phi(phos[..., PHI])
        for i in range(cfg.n_photons):
            cols[f"pho{i + 1}_logpt"] = (_log(phos[:, i, PT]), "ln GeV")
            cols[f"pho{i + 1}_eta"] = (phos[:, i, ETA], "")
            cols[f"pho{i + 1}_dphi"] = (gdphi[:, i], "rad")
        # jet pairs and triplets, every pair (triplet) in one array operation
        pairs = list(itertools.combinations(range(cfg.n_pair_jets), 2))
        if pairs:
            a, b = (np.array(ix) for ix in zip(*pairs, strict=True))
            dr, mass = _dr(jets[:, a], jets[:, b]), _mass(jc[:, a] + jc[:, b])
            for p, (i, k) in enumerate(pairs):
                cols[f"dr_j{i + 1}j{k + 1}"] = (dr[:, p], "")
                cols[f"m_j{i + 1}j{k + 1}"] = (mass[:, p], "GeV")
        triplets = list(itertools.combinations(range(cfg.n_triplet_jets), 3))
        if triplets:
            a, b, c = (np.array(ix) for ix in zip(*triplets, strict=True))
            mass = _mass(jc[:, a] + jc[:, b] + jc[:, c])
            for p, (i, k, m) in enumerate(triplets):
                cols[f"m_j{i + 1}j{k + 1}j{m + 1}"] = (mass[:, p], "GeV")
        # leptons and jets
        n_l = min(cfg.n_leptons, 2)
        dr_l = _dr(leps[:, :n_l, None], jets[:, None, : cfg.n_lepton_jets])
        for i in range(n_l):
            for k in range(cfg.n_lepton_jets):
                cols[f"dr_l{i + 1}j{k + 1}"] = (dr_l[:, i, k], "")
        cols["dr_jj_min"] = (closest_jet_pair_dr(events), "")
        n_l_all = int(lmask.sum(axis=1).max(initial=0))
        n_j_all = int(jmask.sum(axis=1).max(initial=0))
        dr_lj = np.full(n, np.nan)
        if n_l_all and n_j_all:
            li, le = _sorted_slots(events, lmask, n_l_all)
            ji, je = _sorted_slots(events, jmask, n_j_all)
            la, _ = _gather(events, li, le)
            ja, _ = _gather(events, ji, je)
            d = _dr(la[:, :, None], ja[:, None, :]).reshape(n, -1)
            has = np.isfinite(d).any(axis=1)
            dr_lj[has] = np.nanmin(d[has], axis=1)
        cols["dr_lj_min"] = (dr_lj, "")
        # event level
        met = events.met.astype(np.float64)
        cols["met_log"] = (np.log1p(met), "ln GeV")
        cols["met_dphi"] = (np.where(lead_exists[:, 0], rel_phi(events.met_phi.astype(np.float64)), np.nan), "rad")
        ht = events.ht()
        cols["ht_log"] = (np.log1p(ht), "ln GeV")
        counts = events.counts()
        n_jets = counts["j"] + counts["b"]
        cols["n_jets"] = (n_jets.astype(float), "")
        cols["n_bjets"] = (counts["b"].astype(float), "")
        cols["n_electrons"] = ((counts["e-"] + counts["e+"]).astype(float), "")
        cols["n_muons"] = ((counts["m-"] + counts["m+"]).astype(float), "")
        cols["n_photons"] = (counts["g"].astype(float), "")
        cols["lep_charge_sum"] = ((counts["e+"] + counts["m+"] - counts["e-"] - counts["m-"]).astype(float), "")
        lead_group = GROUP_OF_TYPE[np.clip(lead_t[:, 0], 0, len(GROUP_OF_TYPE) - 1)].astype(float)
        cols["lead_group"] = (np.where(lead_exists[:, 0], lead_group, np.nan), "")
    names = tuple(cols)
    values = np.empty((n, len(names)), np.float64)
    for i, name in enumerate(names):
        values[:, i] = cols[name][0]
    return WholeEventFeatures(
        names=names,
        units=tuple(u for _, u in cols.values()),
        values=values,
        weight=events.weight.astype(np.float64),
        n_jets=n_jets.astype(np.int64),
    )


#: A feature with fewer non-missing values than this among a classifier's training rows is
#: used as its presence flag (0/1): scikit-learn cannot bin an (almost) all-missing column.
SPARSE_MIN_VALUES = 20


def sparse_columns(x: np.ndarray) -> np.ndarray:
    """bool [D]: the columns of ``x`` [N, D] (NaN = missing) with fewer than
    :data:`SPARSE_MIN_VALUES` values."""
    return (~np.isnan(x)).sum(axis=0) < SPARSE_MIN_VALUES


def as_presence(x: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """A copy of ``x`` [N, D] whose ``sparse`` columns are replaced by their presence flags."""
    out = x.copy()
    out[:, sparse] = ~np.isnan(x[:, sparse])
    return out


def fill_missing(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Network input from features ``values`` [N, D]: standardised with ``mean``/``std`` [D]
    (a column with std 0 is only centred), NaN (missing object) replaced by 0, and one
    presence column (1 = exists, 0 = missing) appended per feature: float32 [N, 2D]."""
    x = (values - mean) / np.where(std > 0, std, 1.0)
    present = np.isfinite(x)
    return np.concatenate([np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), present], axis=1).astype(np.float32)
