"""Every setting of the structure-first flow (:class:`FlowConfig`), constants included."""

from __future__ import annotations

import dataclasses
from typing import Literal

from fastmc.config import check_config, setting
from fastmc.errors import ConfigError
from fastmc.events import DEFAULT_MAX_OBJECTS
from fastmc.models.flow.physics import SlotLayout

__all__ = ["FlowConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlowConfig:
    """Settings of the structure-first flow (saved in the model directory's config.json).

    Network
    -------
    mode : str                "autoregressive" (default; best fidelity, slow sampling),
                              "coupling" (two passes per transform: the fast mode) or
                              "matching" (conditional flow matching with a transformer over
                              the object slots, :mod:`fastmc.models.flow.matching`; the
                              spline settings below are unused and zuko is not needed)
    transforms : int          spline transforms in the flow (4)
    hidden : int              width of each transform's hidden layers (128)
    layers : int              hidden layers per transform (2)
    bins : int                spline bins (8)
    spline_bound : float      the splines act on [-bound, bound], identity outside (5.0)
    spline_slope : float      minimum slope of the splines (1e-3)
    coupling_split : str      coupling only: "features" (a random split of all parameters into
                              the half drawn first and the half drawn given it, in every
                              transform) or "kinematic" (the even transforms split the
                              momenta (pT, mass, log MET) from the angles (eta, phi, MET
                              phi): angles given momenta, then momenta given angles; the odd
                              ones at random) ("features")
    linear_mixing : bool      a learned invertible linear map of all parameters (LU, from the
                              identity) before every spline transform (False; with
                              transforms: 6 the most faithful coupling flow measured:
                              whole-event AUC 0.609 on 95k ttbar events against 0.624 for
                              the defaults; sampling 3.7e4 events/s on two threads since
                              session 8, about 0.8x the defaults; docs/results.md)
    embedding : int           size of the learned pattern embedding (16)
    max_patterns : int        rows of the embedding table; the most frequent patterns get
                              their own row, the rest share row 0 (256)

    Flow matching (``mode: matching`` only)
    ---------------------------------------
    cfm_dim : int             token width of the transformer velocity field (128; even)
    cfm_layers : int          transformer encoder layers (4)
    cfm_heads : int           attention heads; must divide cfm_dim (4)
    cfm_ff : int              width of each layer's feed-forward block; 0 means 4 x cfm_dim (0)
    cfm_dropout : float       dropout in the encoder layers, training only (0.0)
    ode_steps : int           fixed steps of the sampling ODE from noise (t=0) to data (t=1) (16)
    ode_solver : str          "euler" (1 network pass per step), "midpoint" (2, default) or
                              "rk4" (4)

    Slots and parameterisation (:mod:`fastmc.models.flow.physics`)
    -----------------------------------------------------------------
    max_jets, max_electrons, max_muons, max_photons : int
                              object slots per group (12, 2, 2, 2); softer objects beyond
                              them are dropped in training (fit_data warns with the share)
    max_objects : int         K, width of generated events (19)
    pt_margin : float         thresholds t_g = (1 - pt_margin) x the smallest training pT (0.005)
    eta_margin : float        eta_max_g = largest training |eta| + eta_margin (1e-3)
    radius_margin : float     jet radius = smallest training jet-jet dR - radius_margin (1e-3;
                              dR in (y, phi) with jet_azimuth "allowed", else (eta, phi))
    mass_margin : float       the mass parameter is bounded: no object is decoded with
                              m / pT above mass_margin x the largest of its group in the
                              training data (1.5; 0 = unbounded, as models saved before it)
    separation_tolerance : float  radians: with jet_azimuth "allowed" the built-in separation is
                              checked on the float32 azimuths written out against the jet
                              radius minus this (1e-6); an event below it is rejected, counted
    radius_quantile : float   jet_azimuth "allowed" only: the smallest training dR above is
                              the radius_quantile quantile of the events' closest jet pairs
                              (1e-3; the minimum below 1,000 events), so that the few pairs
                              the detector smeared below R do not lower it: 0.602 on 95k ttbar
                              and 0.595 on 95k stop_02 events, the detector's R = 0.6, where
                              the minimum gives 0.550 and 1e-4 (the default of session 4)
                              0.590 and 0.565, and a flow trained at 0.565 put 2.9% of its
                              stop_02 events within [0.565, 0.6) against 0.1% in Monte Carlo;
                              the training events whose softer jet is then encoded at the
                              radius (at most that share) are counted in config.json ("info":
                              training_events_below_jet_radius; the isolation radii likewise:
                              training_objects_below_isolation)
    default_pt_threshold : float  GeV, for a group absent from the training data (10)
    default_eta_max : float   for a group absent from the training data (2.5)
    default_jet_radius : float    when no training event has two jets (0.4)
    jet_azimuth : str         "allowed" (default): every jet after the first is placed in the
                              azimuths its harder jets allow, so jet pairs are at least the
                              jet radius apart in (y, phi) by construction (nothing rejected
                              for separation; :mod:`fastmc.models.flow.azimuth`); "reference":
                              the plain azimuth, separation by whole-event rejection in
                              (eta, phi) (models saved before this setting existed)
    object_isolation : bool   jet_azimuth "allowed" only: electrons, muons and photons are
                              placed, like jets, in the azimuths that keep them at least their
                              group's isolation radius from every jet (fitted per group as the
                              radius_quantile quantile of the training objects' distances to
                              the nearest jet: ~0.6 = R for electrons and photons, which the
                              detector's overlap removal never leaves inside a jet, ~0 for
                              muons) (True since session 5 of issue 13; models saved before
                              load as false)
    muon_isolation_quantile : float
                              the muons' isolation radius is this quantile of their training
                              distances to the nearest jet instead of radius_quantile (1e-3):
                              Monte Carlo muons have a tail towards the jets (ttbar: 1% within
                              0.49, 2% within 0.545, electrons none within 0.6); 0.01 in
                              configs/flow_large.yaml (measured at 95k events, docs/results.md)
    jet_edge_width, jet_edge_power : float
                              "allowed" only: at the jet radius from a harder jet a jet's
                              density falls to 0 as (d / rho)^jet_edge_power, d its azimuthal
                              distance to the excluded interval, rho the azimuthal distance at
                              which its (y, phi) distance to that jet reaches R +
                              jet_edge_width (0.1 rad, 1; measured in docs/results.md)
    ratio_tolerance, mass_floor, phi_margin, eta_tolerance : float
                              float tolerances of the parameterisation (1e-6, 1e-6, 1e-4, 1e-7;
                              see :class:`~fastmc.models.flow.physics.Parameterisation`)

    Symmetry and generation
    -----------------------
    augment : bool            training-data augmentation: each training event is rotated by
                              pi about the x axis, (eta, phi) -> (-eta, -phi), with
                              probability 1/2 (an exact symmetry of pp collisions) (True;
                              used only with canonical_eta_sign: false)
    canonical_eta_sign : bool the same symmetry built into the parameterisation instead: events
                              are stored with their first object at eta >= 0 and generation
                              draws the orientation uniformly, so generated events are exactly
                              symmetric (True since session 4 of issue 13: with augmentation
                              the second jet's eta came out asymmetric, W1 6-7x its floor;
                              one mechanism at a time; models saved before load as false)
    reflect_augment : bool    training-data augmentation by the second exact symmetry, the
                              reflection phi -> -phi (fastmc.models.flow.symmetry), with
                              probability 1/2 per event, with either form of the first (True
                              since session 6 of issue 13: whole-event AUC 0.677 -> 0.659 on
                              19k ttbar events, 0.677 -> 0.657 on the real sqsq1 file, 0.626
                              -> 0.624 at 95k; models saved before load as false, which only
                              matters if resumed)
    max_draw_factor : float   rejection gives up (error) after drawing this many times the
                              requested events (+1000) without enough events whose jets are
                              all separated by the jet radius (20)
    sample_chunk : int        events per chunk of the flow inverse in sampling (keeps the
                              spline arithmetic in the CPU caches) (1024)
    decode_chunk : int        events per piece of sampling work (at most; whole chunks of
                              sample_chunk, a call's events split evenly between the threads):
                              the flow inverse runs on a piece chunk by chunk, the decoding to
                              four-vectors on the whole piece at once (its ~3000 small tensor
                              operations are a fixed cost per call, about half the time of a
                              1,024-event call) (8192;
                              docs/benchmarks.md "Decoding in larger pieces")
    sample_precision : str    "float32" (default) or "bfloat16": matrix products of the
                              sampling network in bfloat16 (several times faster on CPUs with
                              AVX-512 BF16; the splines stay float32; the sample comes from a
                              slightly perturbed flow, see docs/results.md); in matching mode
                              the velocity field runs under torch.autocast(bfloat16) and the
                              ODE state stays float32
    sample_compile : bool     run the spline inverse of sampling through torch.compile (one
                              fused loop, ~3x faster on the splines; costs a few seconds of
                              compilation per process and needs a C++ compiler; falls back
                              with a warning) (False; docs/benchmarks.md; unused in matching mode)
    """

    mode: Literal["autoregressive", "coupling", "matching"] = "autoregressive"
    transforms: int = setting(4, ge=1)
    hidden: int = setting(128, ge=1)
    layers: int = setting(2, ge=1)
    bins: int = setting(8, ge=2)
    spline_bound: float = setting(5.0, gt=0)
    spline_slope: float = setting(1e-3, gt=0, lt=1)
    coupling_split: Literal["features", "kinematic"] = "features"
    linear_mixing: bool = False
    embedding: int = setting(16, ge=1)
    max_patterns: int = setting(256, ge=1)
    cfm_dim: int = setting(128, ge=2)
    cfm_layers: int = setting(4, ge=1)
    cfm_heads: int = setting(4, ge=1)
    cfm_ff: int = setting(0, ge=0)
    cfm_dropout: float = setting(0.0, ge=0, lt=1)
    ode_steps: int = setting(16, ge=1)
    ode_solver: Literal["euler", "midpoint", "rk4"] = "midpoint"
    max_jets: int = setting(12, ge=0)
    max_electrons: int = setting(2, ge=0)
    max_muons: int = setting(2, ge=0)
    max_photons: int = setting(2, ge=0)
    max_objects: int = setting(DEFAULT_MAX_OBJECTS, ge=1)
    pt_margin: float = setting(0.005, ge=0, lt=1)
    eta_margin: float = setting(1e-3, ge=0)
    radius_margin: float = setting(1e-3, ge=0)
    radius_quantile: float = setting(1e-3, ge=0, lt=1)
    mass_margin: float = setting(1.5, ge=0)
    separation_tolerance: float = setting(1e-6, ge=0)
    default_pt_threshold: float = setting(10.0, ge=0)
    default_eta_max: float = setting(2.5, gt=0)
    default_jet_radius: float = setting(0.4, ge=0)
    jet_azimuth: Literal["reference", "allowed"] = "allowed"
    object_isolation: bool = True
    muon_isolation_quantile: float = setting(1e-3, ge=0, lt=1)
    jet_edge_width: float = setting(0.1, ge=0)
    jet_edge_power: float = setting(1.0, gt=0)
    ratio_tolerance: float = setting(1e-6, gt=0, lt=1)
    mass_floor: float = setting(1e-6, gt=0)
    phi_margin: float = setting(1e-4, gt=0)
    eta_tolerance: float = setting(1e-7, gt=0, lt=1)
    augment: bool = True
    canonical_eta_sign: bool = True
    reflect_augment: bool = True
    max_draw_factor: float = setting(20.0, ge=1)
    sample_chunk: int = setting(1024, ge=1)
    decode_chunk: int = setting(8192, ge=1)
    sample_precision: Literal["float32", "bfloat16"] = "float32"
    sample_compile: bool = False

    def __post_init__(self) -> None:
        check_config(self)
        if self.cfm_dim % self.cfm_heads or self.cfm_dim % 2:
            raise ConfigError(
                f"FlowConfig: cfm_dim ({self.cfm_dim}) must be even and divisible by cfm_heads "
                f"({self.cfm_heads})"
            )

    @property
    def cfm_ff_width(self) -> int:
        """Feed-forward width of the matching transformer (cfm_ff, or 4 x cfm_dim if 0)."""
        return self.cfm_ff or 4 * self.cfm_dim

    @property
    def layout(self) -> SlotLayout:
        return SlotLayout(
            jets=self.max_jets,
            electrons=self.max_electrons,
            muons=self.max_muons,
            photons=self.max_photons,
        )

    @property
    def tolerances(self) -> dict[str, float | bool | str]:
        """The tolerances and options of the parameterisation, as keyword arguments."""
        return {
            "ratio_tolerance": self.ratio_tolerance,
            "mass_floor": self.mass_floor,
            "phi_margin": self.phi_margin,
            "eta_tolerance": self.eta_tolerance,
            "canonical_eta_sign": self.canonical_eta_sign,
            "jet_azimuth": self.jet_azimuth,
            "jet_edge_width": self.jet_edge_width,
            "jet_edge_power": self.jet_edge_power,
            "separation_tolerance": self.separation_tolerance,
        }
