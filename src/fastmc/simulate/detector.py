"""The fast detector response: Pythia particles (awkward) -> reconstructed :class:`Events`.

It follows the Delphes ATLAS card of the Dark Machines data (``shared/detector.md``); every
number is in :class:`~fastmc.simulate.card.DetectorCard`.  The chain, vectorised over a batch
of events (no per-particle Python loop):

1. final-state particles; neutrinos and stable BSM particles (PDG ID >= 1000000, dark matter
   51-53) are invisible; muons do not reach the calorimeter (they are neither in jets nor in
   MET).
2. every calorimeter particle (|eta| <= 4.9) gets its energy smeared (ECAL resolution for
   electrons and photons, HCAL for the rest; the momentum is scaled with the energy).
3. electron, muon and photon candidates: efficiency (pT and |eta|), then isolation (sum of
   the pT of the other visible particles with pT > 0.5 GeV in dR < 0.5, divided by the
   candidate pT).  Muon pT is smeared with the muon resolution.
4. anti-kT jets (R = 0.6, FastJet multi-event clustering) of the smeared calorimeter
   particles, pT > 20 GeV; the HCAL noise term once per jet; the energy-scale correction;
   overlap removal: a jet that contains a kept electron or photon is dropped.
5. b-tagging: flavour b if a b quark (any status, pT > 1 GeV, |eta| < 2.5) lies within
   dR < 0.5 of the jet axis, else c for a c quark, else light; tag with the card's
   probability of the corrected pT.
6. MET = minus the vector sum of the smeared calorimeter particles.
7. stored-object cuts; objects in Dark Machines order.

Units: GeV, radians.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fastmc.errors import require
from fastmc.events import TYPE_CODES, Events, wrap_phi
from fastmc.simulate.card import DetectorCard

__all__ = ["DetectorCard", "DetectorOutput", "detector_response"]

_INVISIBLE_SM = (12, 14, 16)
_GROUP = {"j": 0, "e": 1, "m": 2, "g": 3}


@dataclasses.dataclass
class DetectorOutput:
    """The result for one batch.

    events : Events with every event of the batch (not yet filtered by the storage
        requirement), objects in Dark Machines order, width K = the largest count.
    jets : per-jet diagnostics (flat over all kept jets of the batch, after overlap removal and
        the stored-object cuts): ``event`` int64, ``pt`` corrected pT (GeV) float64, ``eta``,
        ``flavour`` (5, 4 or 0), ``tagged`` bool, ``prob`` tag probability.
    """

    events: Events
    jets: dict[str, np.ndarray]


_BANNER_DONE = False


def _silence_fastjet_banner() -> None:
    """FastJet prints a banner to stdout on first use; print it once into /dev/null."""
    global _BANNER_DONE
    if _BANNER_DONE:
        return
    _BANNER_DONE = True
    import os
    import sys

    try:
        from fastjet import _swig
    except ImportError:  # pragma: no cover - other fastjet builds
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            _swig.ClusterSequence.print_banner()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _resolution(rows, e: np.ndarray, aeta: np.ndarray, noise: bool = False) -> np.ndarray:
    """sigma(E) (GeV) from resolution rows (eta_max, c, s, n); 0 beyond the last row."""
    sigma = np.zeros_like(e)
    done = np.zeros(e.shape, bool)
    for eta_max, c, s, n in rows:
        sel = ~done & (aeta <= eta_max)
        var = (c * e[sel]) ** 2 + s**2 * e[sel] + (n**2 if noise else 0.0)
        sigma[sel] = np.sqrt(var)
        done |= sel
    return sigma


def _efficiency(rows, pt_min: float, pt: np.ndarray, aeta: np.ndarray) -> np.ndarray:
    eff = np.zeros_like(pt)
    done = np.zeros(pt.shape, bool)
    for eta_max, value in rows:
        sel = ~done & (aeta <= eta_max)
        eff[sel] = value
        done |= sel
    return np.where(pt > pt_min, eff, 0.0)


def _pt_eta_phi(px, py, pz):
    """pT, eta, phi of momenta (GeV, flat arrays); eta = +-1000 along the beam."""
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    eta = np.where(pt > 0, eta, np.sign(pz) * 1e3)
    return pt, eta, np.arctan2(py, px)


def _delta_r(eta1, phi1, eta2, phi2):
    dphi = wrap_phi(phi1 - phi2)
    return np.hypot(eta1 - eta2, dphi)


def _pairs(ev_a: np.ndarray, ev_b: np.ndarray, n_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) of every pair of an element of a and one of b in the same event.

    ``ev_a``: event index of each element of a; ``ev_b``: the same for b, sorted (int64).
    """
    cb = np.bincount(ev_b, minlength=n_events)
    start_b = np.concatenate([[0], np.cumsum(cb)[:-1]])
    reps = cb[ev_a]  # pairs per element of a
    ia = np.repeat(np.arange(len(ev_a)), reps)
    if len(ia) == 0:
        return ia, ia.copy()
    # position inside the b-block of the event
    first = np.concatenate([[0], np.cumsum(reps)[:-1]])
    within = np.arange(len(ia)) - np.repeat(first, reps)
    ib = start_b[ev_a[ia]] + within
    return ia, ib


def detector_response(
    batch: Any,
    rng: np.random.Generator,
    card: DetectorCard | None = None,
    *,
    event_id: np.ndarray | None = None,
    process: str = "unknown",
) -> DetectorOutput:
    """Reconstruct a batch of Pythia events (``pythia.nextBatch`` output, GeV).

    Returns a :class:`DetectorOutput` whose ``events`` has one event per input event
    (``event_id`` int64 [N], default 0..N-1), objects in Dark Machines order.
    """
    ak = require("awkward", "core")
    fastjet = require("fastjet", "simulate")
    _silence_fastjet_banner()
    card = card or DetectorCard()
    prt = batch["prt"]
    n = len(prt)
    counts = np.asarray(ak.num(prt, axis=1), dtype=np.int64)
    ev_all = np.repeat(np.arange(n, dtype=np.int64), counts)
    flat = ak.flatten(prt, axis=1)
    pid = np.asarray(flat["id"], dtype=np.int64)
    status = np.asarray(flat["status"])
    mom = flat["p"]
    px, py, pz, e = (np.asarray(mom[c], dtype=np.float64) for c in ("px", "py", "pz", "e"))
    apid = np.abs(pid)

    # ---- partons for the flavour association (any status)
    pt_all, eta_all, phi_all = _pt_eta_phi(px, py, pz)
    is_parton = (
        ((apid == 4) | (apid == 5))
        & (pt_all > card.flavour_parton_pt_min)
        & (np.abs(eta_all) < card.flavour_parton_eta_max)
    )
    par_ev, par_id = ev_all[is_parton], apid[is_parton]
    par_eta, par_phi = eta_all[is_parton], phi_all[is_parton]

    # ---- final state
    fs = status > 0
    invisible = np.isin(apid, _INVISIBLE_SM) | (apid >= 1_000_000) | ((apid >= 51) & (apid <= 53))
    visible = fs & ~invisible
    is_muon = visible & (apid == 13)
    calo = visible & ~is_muon & (np.abs(eta_all) <= card.calo_eta_max)

    # smear calorimeter particles (energy; momentum scaled with it)
    ci = np.flatnonzero(calo)
    c_ev = ev_all[ci]
    c_em = (apid[ci] == 11) | (apid[ci] == 22)
    c_e = e[ci]
    aeta_c = np.abs(eta_all[ci])
    sigma = np.where(
        c_em,
        _resolution(card.ecal_resolution, c_e, aeta_c),
        _resolution(card.hcal_resolution, c_e, aeta_c),
    )
    e_s = np.maximum(c_e + sigma * rng.standard_normal(len(ci)), 0.0)
    scale = np.divide(e_s, c_e, out=np.zeros_like(c_e), where=c_e > 0)
    cpx, cpy, cpz = px[ci] * scale, py[ci] * scale, pz[ci] * scale
    c_pt, c_eta, c_phi = _pt_eta_phi(cpx, cpy, cpz)

    # MET from the smeared calorimeter particles
    met_x = -np.bincount(c_ev, weights=cpx, minlength=n)
    met_y = -np.bincount(c_ev, weights=cpy, minlength=n)

    # ---- isolation inputs: smeared calo particles + muons (smeared below), pT > iso_pt_min
    mi = np.flatnonzero(is_muon)
    m_ev = ev_all[mi]
    m_aeta = np.abs(eta_all[mi])
    m_pt_true = pt_all[mi]
    m_rel = np.full(len(mi), np.nan)
    for eta_max, below, above in reversed(card.muon_resolution):
        m_rel = np.where(m_aeta <= eta_max, np.where(m_pt_true <= 200, below, above), m_rel)
    m_rel = np.nan_to_num(m_rel, nan=card.muon_resolution[-1][2])
    m_pt = np.maximum(m_pt_true * (1 + m_rel * rng.standard_normal(len(mi))), 0.0)

    iso_ev = np.concatenate([c_ev, m_ev])
    iso_pt = np.concatenate([c_pt, m_pt])
    iso_eta = np.concatenate([c_eta, eta_all[mi]])
    iso_phi = np.concatenate([c_phi, phi_all[mi]])
    keep_iso = iso_pt > card.iso_pt_min
    order = np.argsort(iso_ev[keep_iso], kind="stable")
    iso_ev, iso_pt, iso_eta, iso_phi = (
        a[keep_iso][order] for a in (iso_ev, iso_pt, iso_eta, iso_phi)
    )

    def isolated(ev, pt, eta, phi, iso_max):
        """Candidates (sorted by event) whose isolation ratio is below iso_max."""
        if len(ev) == 0:
            return np.zeros(0, bool)
        ia, ib = _pairs(ev, iso_ev, n)
        near = _delta_r(eta[ia], phi[ia], iso_eta[ib], iso_phi[ib]) < card.iso_dr
        total = np.bincount(ia[near], weights=iso_pt[ib][near], minlength=len(ev))
        others = total - np.where(pt > card.iso_pt_min, pt, 0.0)  # the candidate itself
        return np.maximum(others, 0.0) / pt < iso_max

    def select(ev, pt, eta, eff_rows, eff_pt_min, iso_max, phi):
        eff = _efficiency(eff_rows, eff_pt_min, pt, np.abs(eta))
        passed = rng.random(len(ev)) < eff
        keep = np.zeros(len(ev), bool)
        idx = np.flatnonzero(passed)
        keep[idx] = isolated(ev[idx], pt[idx], eta[idx], phi[idx], iso_max)
        return keep

    # electrons and photons (indices into the calo arrays, sorted by event already)
    is_e = apid[ci] == 11
    is_g = pid[ci] == 22
    ele_keep = np.zeros(len(ci), bool)
    pho_keep = np.zeros(len(ci), bool)
    for mask, out, rows, ptmin, iso in (
        (is_e, ele_keep, card.electron_eff, card.electron_eff_pt_min, card.electron_iso_max),
        (is_g, pho_keep, card.photon_eff, card.photon_eff_pt_min, card.photon_iso_max),
    ):
        idx = np.flatnonzero(mask & (c_pt > ptmin))
        out[idx] = select(c_ev[idx], c_pt[idx], c_eta[idx], rows, ptmin, iso, c_phi[idx])
    mu_keep = np.zeros(len(mi), bool)
    idx = np.flatnonzero(m_pt > card.muon_eff_pt_min)
    mu_keep[idx] = select(
        m_ev[idx],
        m_pt[idx],
        eta_all[mi][idx],
        card.muon_eff,
        card.muon_eff_pt_min,
        card.muon_iso_max,
        phi_all[mi][idx],
    )

    # ---- jets: anti-kT of the smeared calorimeter particles
    c_counts = np.bincount(c_ev, minlength=n)
    c_e_s = e_s
    parts = ak.unflatten(
        ak.zip({"px": cpx, "py": cpy, "pz": cpz, "E": c_e_s}, with_name="Momentum4D"),
        c_counts,
    )
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, card.jet_r)
    cluster = fastjet.ClusterSequence(parts, jetdef)
    jets = cluster.inclusive_jets(min_pt=card.jet_pt_min)
    consts = cluster.constituent_index(min_pt=card.jet_pt_min)
    j_counts = np.asarray(ak.num(jets, axis=1), dtype=np.int64)
    j_ev = np.repeat(np.arange(n, dtype=np.int64), j_counts)
    jf = ak.flatten(jets, axis=1)
    jpx, jpy, jpz, je = (np.asarray(jf[c], dtype=np.float64) for c in ("px", "py", "pz", "E"))
    # overlap removal: a jet containing a kept electron or photon is dropped
    c_start = np.concatenate([[0], np.cumsum(c_counts)[:-1]])
    const_counts = np.asarray(ak.num(ak.flatten(consts, axis=1), axis=1), dtype=np.int64)
    const_local = np.asarray(ak.flatten(consts, axis=None), dtype=np.int64)
    const_global = const_local + np.repeat(c_start[j_ev], const_counts)
    eg_kept = ele_keep | pho_keep
    jet_of_const = np.repeat(np.arange(len(j_ev)), const_counts)
    overlaps = np.bincount(jet_of_const, weights=eg_kept[const_global], minlength=len(j_ev)) > 0

    # noise term once per jet, then the energy-scale correction
    j_pt, j_eta, j_phi = _pt_eta_phi(jpx, jpy, jpz)
    noise = np.zeros_like(je)
    for eta_max, _, _, nterm in reversed(card.hcal_resolution):
        noise = np.where(np.abs(j_eta) <= eta_max, nterm, noise)
    je_n = np.maximum(je + noise * rng.standard_normal(len(je)), 1e-6)
    f = je_n / np.maximum(je, 1e-9)
    f = f * card.jes_factor(j_pt * f, j_eta)
    j_pt, je = j_pt * f, je * f

    jpt_min, jeta_max = card.store_jet
    jet_keep = ~overlaps & (j_pt > jpt_min) & (np.abs(j_eta) < jeta_max)
    j_ev, j_pt, j_eta, j_phi, je = (a[jet_keep] for a in (j_ev, j_pt, j_eta, j_phi, je))

    # flavour association and b-tagging
    flavour = np.zeros(len(j_ev), np.int64)
    if len(j_ev) and len(par_ev):
        ia, ib = _pairs(j_ev, par_ev, n)
        near = _delta_r(j_eta[ia], j_phi[ia], par_eta[ib], par_phi[ib]) < card.flavour_dr
        has_b = np.bincount(ia[near], weights=par_id[ib][near] == 5, minlength=len(j_ev)) > 0
        has_c = np.bincount(ia[near], weights=par_id[ib][near] == 4, minlength=len(j_ev)) > 0
        flavour = np.where(has_b, 5, np.where(has_c, 4, 0))
    prob = card.btag_probability(j_pt, flavour)
    tagged = rng.random(len(j_ev)) < prob

    # ---- leptons and photons passing the stored-object cuts
    lpt_min, leta_max = card.store_lepton
    gpt_min, geta_max = card.store_photon
    e_sel = ele_keep & (c_pt > lpt_min) & (np.abs(c_eta) < leta_max)
    g_sel = pho_keep & (c_pt > gpt_min) & (np.abs(c_eta) < geta_max)
    m_eta, m_phi = eta_all[mi], phi_all[mi]
    m_sel = mu_keep & (m_pt > lpt_min) & (np.abs(m_eta) < leta_max)
    e_type = np.where(pid[ci][e_sel] > 0, TYPE_CODES["e-"], TYPE_CODES["e+"])
    m_type = np.where(pid[mi][m_sel] > 0, TYPE_CODES["m-"], TYPE_CODES["m+"])
    m_e = m_pt[m_sel] * np.cosh(m_eta[m_sel])  # massless-muon energy from the smeared pT

    obj_ev = np.concatenate([j_ev, c_ev[e_sel], m_ev[m_sel], c_ev[g_sel]])
    obj_type = np.concatenate(
        [
            np.where(tagged, TYPE_CODES["b"], TYPE_CODES["j"]),
            e_type,
            m_type,
            np.full(int(g_sel.sum()), TYPE_CODES["g"]),
        ]
    ).astype(np.int8)
    obj_e = np.concatenate([je, e_s[e_sel], m_e, e_s[g_sel]])
    obj_pt = np.concatenate([j_pt, c_pt[e_sel], m_pt[m_sel], c_pt[g_sel]])
    obj_eta = np.concatenate([j_eta, c_eta[e_sel], m_eta[m_sel], c_eta[g_sel]])
    obj_phi = np.concatenate([j_phi, c_phi[e_sel], m_phi[m_sel], c_phi[g_sel]])

    # pad into [N, K] (order inside an event is fixed by Events.sorted())
    order = np.argsort(obj_ev, kind="stable")
    obj_ev = obj_ev[order]
    per_event = np.bincount(obj_ev, minlength=n)
    k = max(int(per_event.max()) if n else 0, 1)
    start = np.concatenate([[0], np.cumsum(per_event)[:-1]])
    slot = np.arange(len(obj_ev)) - start[obj_ev]
    types = np.zeros((n, k), np.int8)
    p4 = np.zeros((n, k, 4), np.float32)
    types[obj_ev, slot] = obj_type[order]
    p4[obj_ev, slot] = np.stack(
        [obj_e[order], obj_pt[order], obj_eta[order], wrap_phi(obj_phi[order])], axis=-1
    )
    events = Events.from_arrays(
        types=types,
        p4=p4,
        met=np.hypot(met_x, met_y),
        met_phi=wrap_phi(np.arctan2(met_y, met_x)),
        event_id=np.arange(n) if event_id is None else event_id,
        process=process,
    ).sorted()
    jets_info = {
        "event": j_ev,
        "pt": j_pt,
        "eta": j_eta,
        "flavour": flavour,
        "tagged": tagged,
        "prob": prob,
    }
    return DetectorOutput(events=events, jets=jets_info)
