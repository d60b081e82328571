"""The observables of the evaluation protocol (design.md section 4), vectorised from Events.

Every observable is one float64 number per event.  Units: **GeV** for energies, momenta and
masses, radians for angles, counts are plain numbers, eta and dR are unitless.  An observable
that does not exist in an event (the second jet of a one-jet event, any lepton of an event
without leptons) is **NaN, never 0**, so that a missing object can't pass for a soft one.

Definitions
-----------
- jets are objects of type ``j`` or ``b``; leptons are ``e-``, ``e+``, ``m-``, ``m+``;
- "leading" and "second" are chosen by pT inside the group, whatever order the objects are
  stored in (a generator need not respect Dark Machines order; that is checked separately by
  :func:`fastmc.evaluate.metrics.physicality`);
- ``n_jets`` counts all jets (``j`` and ``b``), ``n_bjets`` the ``b`` among them;
  ``n_electrons`` counts ``e-`` and ``e+``, ``n_muons`` counts ``m-`` and ``m+``;
- ``ht`` is the scalar sum of jet pT (0 in an event without jets, which is a real value);
- ``m_jj``/``m_ll``: invariant mass of the two leading jets/leptons (sqrt of max(m^2, 0));
- ``dr_jj``: sqrt(d_eta^2 + d_phi^2) of the two leading jets, d_phi wrapped into (-pi, pi].
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Self

import numpy as np

from fastmc.events import ETA, PHI, PT, E, Events, wrap_phi

__all__ = [
    "MISSING_GROUPS",
    "OBSERVABLES",
    "ColumnTable",
    "ObservableSpec",
    "Observables",
    "compute_observables",
    "presence",
]


@dataclasses.dataclass(frozen=True)
class ObservableSpec:
    """Name, unit, plot label and kind of one observable.

    ``kind`` is ``"count"`` (integer valued), ``"angle"`` (phi, radians), or ``"continuous"``.
    ``group`` names the object the observable needs (``"jet1"``, ``"jet2"``, ``"lep1"``,
    ``"lep2"``) or is ``""`` when it always exists.  ``log`` asks plots for a log y axis.
    """

    name: str
    unit: str
    label: str
    kind: str = "continuous"
    group: str = ""
    log: bool = False


def _object_specs(prefix: str, what: str, group: str) -> list[ObservableSpec]:
    return [
        ObservableSpec(f"{prefix}_e", "GeV", f"E({what}) [GeV]", group=group, log=True),
        ObservableSpec(f"{prefix}_pt", "GeV", f"$p_T$({what}) [GeV]", group=group, log=True),
        ObservableSpec(f"{prefix}_eta", "", f"$\\eta$({what})", group=group),
        ObservableSpec(f"{prefix}_phi", "rad", f"$\\phi$({what}) [rad]", "angle", group),
    ]


#: The observables, in the order of :attr:`Observables.values` columns.
OBSERVABLES: tuple[ObservableSpec, ...] = (
    ObservableSpec("met", "GeV", "$E_T^{miss}$ [GeV]", log=True),
    ObservableSpec("met_phi", "rad", "$\\phi(E_T^{miss})$ [rad]", "angle"),
    ObservableSpec("n_jets", "", "number of jets (j+b)", "count"),
    ObservableSpec("n_bjets", "", "number of b-jets", "count"),
    ObservableSpec("n_electrons", "", "number of electrons", "count"),
    ObservableSpec("n_muons", "", "number of muons", "count"),
    ObservableSpec("n_photons", "", "number of photons", "count"),
    *_object_specs("jet1", "leading jet", "jet1"),
    *_object_specs("jet2", "second jet", "jet2"),
    *_object_specs("lep1", "leading lepton", "lep1"),
    *_object_specs("lep2", "second lepton", "lep2"),
    ObservableSpec("ht", "GeV", "$H_T$ [GeV]", log=True),
    ObservableSpec("m_jj", "GeV", "$m_{jj}$ (two leading jets) [GeV]", group="jet2", log=True),
    ObservableSpec("m_ll", "GeV", "$m_{\\ell\\ell}$ (two leading leptons) [GeV]", group="lep2",
                   log=True),
    ObservableSpec("dr_jj", "", "$\\Delta R_{jj}$ (two leading jets)", group="jet2"),
)

#: The missing-object groups: an observable of group g is NaN exactly when ``has_<g>`` is 0.
MISSING_GROUPS: tuple[str, ...] = ("jet1", "jet2", "lep1", "lep2")

_INDEX = {s.name: i for i, s in enumerate(OBSERVABLES)}


class ColumnTable:
    """Row and column access shared by the per-event tables (:class:`Observables`,
    :class:`fastmc.evaluate.features.WholeEventFeatures`): a dataclass with ``names`` [D],
    ``values`` [N, D] and the per-row arrays listed in ``_row_fields``."""

    _kind: ClassVar[str] = "column"
    _row_fields: ClassVar[tuple[str, ...]] = ("values", "weight")
    names: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return self.values.shape[0]

    def __getitem__(self, name: str) -> np.ndarray:
        """The column ``name``, float64 [N]."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"no {self._kind} {name!r}; known: {', '.join(self.names)}") from None

    def take(self, index: np.ndarray) -> Self:
        """The rows ``index`` (integer array or boolean mask)."""
        rows = {f: getattr(self, f)[index] for f in self._row_fields}
        return dataclasses.replace(self, **rows)


@dataclasses.dataclass(frozen=True, eq=False)
class Observables(ColumnTable):
    """Observables of ``N`` events.

    Attributes
    ----------
    names, units : tuple of str [D]
        Column names (see :data:`OBSERVABLES`) and units (``"GeV"``, ``"rad"`` or ``""``).
    values : float64 [N, D]
        One row per event, NaN where the object the observable needs is missing.
    weight : float64 [N]
        The event weights.
    """

    _kind: ClassVar[str] = "observable"

    names: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray
    weight: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{name: float64 [N]}``."""
        return {n: self.values[:, i] for i, n in enumerate(self.names)}

    @property
    def specs(self) -> tuple[ObservableSpec, ...]:
        return tuple(OBSERVABLES[_INDEX[n]] for n in self.names)


def _leading_two(events: Events, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices [N, 2] of the two highest-pT slots in ``mask`` and their existence [N, 2]."""
    pt = np.where(mask, events.p4[..., PT].astype(np.float64), -np.inf)
    k = pt.shape[1]
    if k >= 2:
        top = np.argsort(-pt, axis=1, kind="stable")[:, :2]
    else:
        top = np.zeros((pt.shape[0], 2), np.int64)
    exists = np.stack([mask.sum(axis=1) >= 1, mask.sum(axis=1) >= 2], axis=1)
    return top, exists, pt


def _kinematics(events: Events, idx: np.ndarray, exists: np.ndarray) -> np.ndarray:
    """(E, pT, eta, phi) float64 [N, 2, 4] of the chosen slots, NaN where missing."""
    p4 = np.take_along_axis(events.p4, idx[..., None], axis=1).astype(np.float64)
    return np.where(exists[..., None], p4, np.nan)


def _pair_mass(p4: np.ndarray) -> np.ndarray:
    """Invariant mass (GeV) of the two objects in ``p4`` [N, 2, 4] (E, pT, eta, phi)."""
    e, pt, eta, phi = (p4[..., i] for i in (E, PT, ETA, PHI))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    tot = [x.sum(axis=1) for x in (e, px, py, pz)]
    m2 = tot[0] ** 2 - tot[1] ** 2 - tot[2] ** 2 - tot[3] ** 2
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(np.isnan(m2), np.nan, np.clip(m2, 0, None)))


def compute_observables(events: Events) -> Observables:
    """All observables of :data:`OBSERVABLES` for ``events`` (GeV, radians).

    Returns :class:`Observables` with ``values`` float64 [N, D], D = ``len(OBSERVABLES)``.
    Unknown object types (codes outside 1..7) count as nothing; they are the business of
    :func:`fastmc.evaluate.metrics.physicality`.
    """
    n = len(events)
    cols: dict[str, np.ndarray] = {}
    cols["met"] = events.met.astype(np.float64)
    cols["met_phi"] = events.met_phi.astype(np.float64)
    counts = events.counts()
    cols["n_jets"] = (counts["j"] + counts["b"]).astype(np.float64)
    cols["n_bjets"] = counts["b"].astype(np.float64)
    cols["n_electrons"] = (counts["e-"] + counts["e+"]).astype(np.float64)
    cols["n_muons"] = (counts["m-"] + counts["m+"]).astype(np.float64)
    cols["n_photons"] = counts["g"].astype(np.float64)

    jmask = events.mask("j", "b")
    lmask = events.mask("e-", "e+", "m-", "m+")
    pairs = {}
    for prefix, mask in (("jet", jmask), ("lep", lmask)):
        idx, exists, _ = _leading_two(events, mask)
        kin = _kinematics(events, idx, exists)
        pairs[prefix] = kin
        for j in range(2):
            for name, col in (("e", E), ("pt", PT), ("eta", ETA), ("phi", PHI)):
                cols[f"{prefix}{j + 1}_{name}"] = kin[:, j, col]
    cols["ht"] = events.ht()
    cols["m_jj"] = _pair_mass(pairs["jet"])
    cols["m_ll"] = _pair_mass(pairs["lep"])
    jets = pairs["jet"]
    deta = jets[:, 0, ETA] - jets[:, 1, ETA]
    dphi = wrap_phi(jets[:, 0, PHI] - jets[:, 1, PHI])
    cols["dr_jj"] = np.sqrt(deta**2 + dphi**2)

    names = tuple(s.name for s in OBSERVABLES)
    values = np.empty((n, len(names)), np.float64)
    for i, name in enumerate(names):
        values[:, i] = cols[name]
    return Observables(
        names=names,
        units=tuple(s.unit for s in OBSERVABLES),
        values=values,
        weight=events.weight.astype(np.float64),
    )


def presence(obs: Observables) -> np.ndarray:
    """float64 [N, 4]: 1 where the object of each :data:`MISSING_GROUPS` entry exists, else 0."""
    first = {g: next(s.name for s in OBSERVABLES if s.group == g) for g in MISSING_GROUPS}
    return np.stack([~np.isnan(obs[first[g]]) for g in MISSING_GROUPS], axis=1).astype(np.float64)
