"""The defect zoo of issue 12: realistic generator failures planted into real events.

Each function takes :class:`Events` (GeV, Dark Machines order) and a seeded generator and
returns a new Events with the defect; the input is not modified.
"""

from __future__ import annotations

import numpy as np

from fastmc.events import ETA, PHI, PT, TYPE_CODES, E, Events, wrap_phi


def _copy(ev: Events) -> Events:
    return ev[np.arange(len(ev))]


def _set_e(p4: np.ndarray, mass: np.ndarray) -> None:
    """E from pT, eta and the given mass (in place), p4 [..., 4]."""
    p4[..., E] = np.sqrt(mass**2 + (p4[..., PT] * np.cosh(p4[..., ETA])) ** 2)


def _mass(p4: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(p4[..., E] ** 2 - (p4[..., PT] * np.cosh(p4[..., ETA])) ** 2, 0, None))


def soft_jets_redrawn(ev: Events, rng: np.random.Generator) -> Events:
    """Jets after the second get another event's eta and a uniform phi (E keeps the mass)."""
    out = _copy(ev)
    jet = out.mask("j", "b")
    rank = np.cumsum(jet, axis=1) * jet  # 1 = leading jet (Dark Machines order)
    soft = rank >= 3
    p4 = out.p4.astype(np.float64)
    m = _mass(p4)
    donor = rng.permutation(len(ev))
    p4[..., ETA] = np.where(soft, ev.p4[donor][..., ETA], p4[..., ETA])
    p4[..., PHI] = np.where(soft, rng.uniform(-np.pi, np.pi, soft.shape), p4[..., PHI])
    new = p4.copy()
    _set_e(new, m)
    p4[..., E] = np.where(soft, new[..., E], p4[..., E])
    out.p4 = p4.astype(np.float32)
    return out


def btags_moved(ev: Events, rng: np.random.Generator) -> Events:
    """In every event with a b tag, the tags are shuffled among the event's jets."""
    out = _copy(ev)
    jet = out.mask("j", "b")
    types = out.types.copy()
    for i in np.flatnonzero((types == TYPE_CODES["b"]).any(axis=1) & (jet.sum(axis=1) >= 2)):
        slots = np.flatnonzero(jet[i])
        types[i, slots] = rng.permutation(types[i, slots])
    out.types = types
    return out


def met_phi_flat(ev: Events, rng: np.random.Generator) -> Events:
    """MET azimuth uniform in (-pi, pi]."""
    out = _copy(ev)
    out.met_phi = rng.uniform(-np.pi, np.pi, len(ev)).astype(np.float32)
    return out


def dr_pileup(ev: Events, rng: np.random.Generator, *, share: float = 0.3, radius: float = 0.6) -> Events:
    """In ``share`` of the events with >= 2 jets, the softer jet of the closest pair is moved
    along the line from the harder one out to dR = ``radius`` (what a decoder that repairs
    too-close jets does, only everywhere)."""
    out = _copy(ev)
    p4 = out.p4.astype(np.float64)
    jet = out.mask("j", "b")
    for i in np.flatnonzero((jet.sum(axis=1) >= 2) & (rng.random(len(ev)) < share)):
        s = np.flatnonzero(jet[i])
        eta, phi = p4[i, s, ETA], p4[i, s, PHI]
        d = np.hypot(eta[:, None] - eta[None, :], wrap_phi(phi[:, None] - phi[None, :]))
        d[np.diag_indices(len(s))] = np.inf
        a, b = np.unravel_index(np.argmin(d), d.shape)
        hard, soft = (s[a], s[b]) if p4[i, s[a], PT] >= p4[i, s[b], PT] else (s[b], s[a])
        de, dp = p4[i, soft, ETA] - p4[i, hard, ETA], wrap_phi(p4[i, soft, PHI] - p4[i, hard, PHI])
        scale = radius / max(np.hypot(de, dp), 1e-9)
        m = _mass(p4[i, soft])
        p4[i, soft, ETA] = p4[i, hard, ETA] + de * scale
        p4[i, soft, PHI] = wrap_phi(p4[i, hard, PHI] + dp * scale)
        _set_e(p4[i, soft], m)
    out.p4 = p4.astype(np.float32)
    return out


def charges_flipped(ev: Events, rng: np.random.Generator) -> Events:
    """In events with exactly two leptons, the charge of the softer one is flipped."""
    out = _copy(ev)
    lep = out.mask("e-", "e+", "m-", "m+")
    types = out.types.copy()
    flip = {TYPE_CODES["e-"]: TYPE_CODES["e+"], TYPE_CODES["e+"]: TYPE_CODES["e-"],
            TYPE_CODES["m-"]: TYPE_CODES["m+"], TYPE_CODES["m+"]: TYPE_CODES["m-"]}
    pt = np.where(lep, out.p4[..., PT], np.inf)
    for i in np.flatnonzero(lep.sum(axis=1) == 2):
        j = int(np.argmin(pt[i]))
        types[i, j] = flip[int(types[i, j])]
    out.types = types
    return out.sorted()


def third_jet_scale(ev: Events, rng: np.random.Generator, *, factor: float = 1.03) -> Events:
    """E and pT of the third jet (by pT) scaled by ``factor``."""
    out = _copy(ev)
    jet = out.mask("j", "b")
    third = (np.cumsum(jet, axis=1) * jet) == 3
    p4 = out.p4.copy()
    p4[..., E] = np.where(third, p4[..., E] * factor, p4[..., E])
    p4[..., PT] = np.where(third, p4[..., PT] * factor, p4[..., PT])
    out.p4 = p4
    return out.sorted()


DEFECTS = {
    "soft_jets_redrawn": soft_jets_redrawn,
    "btags_moved": btags_moved,
    "met_phi_flat": met_phi_flat,
    "dr_pileup": dr_pileup,
    "charges_flipped": charges_flipped,
    "third_jet_scale_3pct": third_jet_scale,
}
