"""``DetectorCard``: every number of the detector response, in one documented frozen dataclass.

The defaults follow the stock Delphes ATLAS card used for the Dark Machines data
(``shared/detector.md``): muons are kept out of the calorimeter (neither in jets nor in MET),
no pile-up.  Energies and momenta in GeV.  Change a number with
``dataclasses.replace(DetectorCard(), jet_r=0.4)`` or ``DetectorCard(jet_r=0.4, ...)``.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["DetectorCard"]

Resolution = tuple[tuple[float, float, float, float], ...]
Efficiency = tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DetectorCard:
    """The detector response (defaults: Delphes ATLAS card as in the Dark Machines data).

    Calorimeter resolutions are tables of rows ``(eta_max, c, s, n)``: for |eta| <= eta_max
    (first matching row) sigma(E) = sqrt((c E)^2 + s^2 E + n^2), E in GeV.  The stochastic and
    constant terms are applied to each visible particle (ECAL for e and photons, HCAL for the
    rest); the noise term ``n`` is applied once per jet (Delphes applies it per tower, so this
    is an approximation; see docs/simulation.md).

    Efficiencies are tables of rows ``(eta_max, efficiency)`` applied above ``*_eff_pt_min``
    (efficiency 0 below it and beyond the last eta_max).
    """

    # --- calorimeter and jets
    calo_eta_max: float = 4.9  #: particles beyond |eta| reach no calorimeter
    jet_r: float = 0.6  #: anti-kT radius
    jet_pt_min: float = 20.0  #: jet threshold before the energy-scale correction, GeV
    jes_a: float = 3.0  #: JES factor sqrt((jes_a - jes_b |eta|)^2 / pT + 1)
    jes_b: float = 0.2
    ecal_resolution: Resolution = ((3.2, 0.0017, 0.101, 0.0), (4.9, 0.035, 0.285, 0.0))
    hcal_resolution: Resolution = (
        (1.7, 0.0302, 0.5205, 1.59),
        (3.2, 0.05, 0.706, 0.0),
        (4.9, 0.0942, 1.0, 0.0),
    )
    # --- b-tagging (jet flavour from partons; probabilities vs corrected jet pT)
    flavour_dr: float = 0.5  #: parton-jet matching cone
    flavour_parton_pt_min: float = 1.0
    flavour_parton_eta_max: float = 2.5
    #: b: a tanh(k pT) c / (1 + d pT) with (a, k, c, d)
    btag_b: tuple[float, float, float, float] = (0.80, 0.003, 30.0, 0.086)
    #: c: same form
    btag_c: tuple[float, float, float, float] = (0.20, 0.02, 1.0, 0.0034)
    #: light: p0 + p1 pT
    btag_light: tuple[float, float] = (0.002, 7.3e-6)
    # --- electrons, muons, photons
    electron_eff_pt_min: float = 10.0
    electron_eff: Efficiency = ((1.5, 0.95), (2.5, 0.85))
    muon_eff_pt_min: float = 10.0
    muon_eff: Efficiency = ((1.5, 0.95), (2.5, 0.85))
    photon_eff_pt_min: float = 10.0
    photon_eff: Efficiency = ((1.5, 0.95), (2.5, 0.85))
    #: muon relative pT resolution (not in detector.md; close to the ATLAS card's smearing):
    #: rows (eta_max, sigma/pT below 200 GeV, sigma/pT above 200 GeV)
    muon_resolution: tuple[tuple[float, float, float], ...] = ((1.5, 0.03, 0.05), (2.7, 0.04, 0.06))
    iso_dr: float = 0.5  #: isolation cone
    iso_pt_min: float = 0.5  #: particles counted in the isolation sum
    electron_iso_max: float = 0.12
    muon_iso_max: float = 0.25
    photon_iso_max: float = 0.12
    # --- stored objects (|eta| < max and pT > min, GeV)
    store_jet: tuple[float, float] = (20.0, 2.8)
    store_lepton: tuple[float, float] = (15.0, 2.7)
    store_photon: tuple[float, float] = (20.0, 2.37)

    def __post_init__(self) -> None:
        positive = ("calo_eta_max", "jet_r", "flavour_dr", "iso_dr")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"DetectorCard.{name} must be a positive number, got {value!r}")
        for name in ("jet_pt_min", "iso_pt_min", "electron_eff_pt_min", "muon_eff_pt_min"):
            if getattr(self, name) < 0:
                raise ValueError(f"DetectorCard.{name} must be >= 0 GeV, got {getattr(self, name)}")
        for name in ("ecal_resolution", "hcal_resolution"):
            rows = getattr(self, name)
            if not rows or any(len(r) != 4 or min(r) < 0 for r in rows):
                raise ValueError(
                    f"DetectorCard.{name} must be rows (eta_max, c, s, n) of numbers >= 0, "
                    f"got {rows!r}"
                )
            if [r[0] for r in rows] != sorted(r[0] for r in rows):
                raise ValueError(f"DetectorCard.{name}: eta_max must increase, got {rows!r}")
        for name in ("electron_eff", "muon_eff", "photon_eff"):
            rows = getattr(self, name)
            if any(len(r) != 2 or not 0 <= r[1] <= 1 for r in rows):
                raise ValueError(
                    f"DetectorCard.{name} must be rows (eta_max, efficiency in [0, 1]), "
                    f"got {rows!r}"
                )
        for name in ("electron_iso_max", "muon_iso_max", "photon_iso_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DetectorCard.{name} must be > 0, got {getattr(self, name)}")
        for name in ("store_jet", "store_lepton", "store_photon"):
            pt, eta = getattr(self, name)
            if pt < 0 or eta <= 0:
                raise ValueError(f"DetectorCard.{name} must be (pT_min >= 0, eta_max > 0)")

    # ------------------------------------------------------------------ formulas
    def btag_probability(self, pt, flavour):
        """Tag probability for jets of corrected ``pt`` (GeV, array) and ``flavour`` (5, 4, 0)."""
        import numpy as np

        pt = np.asarray(pt, dtype=np.float64)
        a, k, c, d = self.btag_b
        p_b = a * np.tanh(k * pt) * c / (1 + d * pt)
        a, k, c, d = self.btag_c
        p_c = a * np.tanh(k * pt) * c / (1 + d * pt)
        p_l = self.btag_light[0] + self.btag_light[1] * pt
        p = np.where(flavour == 5, p_b, np.where(flavour == 4, p_c, p_l))
        return np.clip(p, 0.0, 1.0)

    def jes_factor(self, pt, eta):
        """Energy-scale factor sqrt((a - b|eta|)^2 / pT + 1) (pT GeV, arrays)."""
        import numpy as np

        pt = np.maximum(np.asarray(pt, dtype=np.float64), 1e-9)
        return np.sqrt((self.jes_a - self.jes_b * np.abs(eta)) ** 2 / pt + 1)
