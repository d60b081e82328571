"""Structure-first conditional normalizing flow (issues 8 and 13), registered as ``"flow"``.

Generation runs in two steps:

1. **Structure**: an object-type pattern (e.g. ``j j b j b m+``: jet multiplicity, which jets
   carry the b tag, lepton flavours and charges, photons) is drawn from the empirical pattern
   distribution of the training events (:class:`fastmc.models.flow.structure.PatternDistribution`),
   so object counts per type are exact by construction and every pattern is a training pattern.
2. **Kinematics**: a conditional rational-quadratic spline flow (zuko masked-autoregressive
   transforms, :func:`fastmc.models.flow.inverse.build_spline_flow`) draws the physics-aware
   parameters of :mod:`fastmc.models.flow.physics` (pT, eta, phi and mass parameters of every
   object slot, log MET and the MET azimuth) jointly, conditioned on the pattern (which slots
   are filled and with which type, counts per type, and a learned embedding of the
   ``max_patterns - 1`` most frequent patterns; rarer ones share one embedding).  Absent slots
   are filled with standard-normal noise in training and dropped when decoding, so the flow
   never models padding.  A global azimuthal rotation is drawn uniformly per event.

Processes (issue 14): a model trained on several processes keeps one pattern distribution per
process (counts over the shared pattern table, ``structure.process_counts``) and adds a learned
process embedding (``embedding`` wide) to the flow's context, so
``sample(condition=Condition(process="ttbar"))`` draws ttbar patterns and ttbar kinematics.  A
one-process model has neither (its context is unchanged).

Physical parameters (issue 14): a model trained on several parameter points of a family
(processes ``gluino_01@m_gluino=1000``, ``...=1400``, ``...=1800``; see :mod:`fastmc.points`)
is :attr:`~FlowModel.param_conditional`.  Its process embedding is then one row per *family*
(all points of ``gluino_01`` share it), and the context also carries the point's parameters,
standardised over the trained points as in the VAE's label (``param_table`` [P, D], the
parameter columns of :meth:`fastmc.points.ProcessSpace.labels`), so
``sample(condition=Condition(process="gluino_01", params={"m_gluino": 1600}))`` conditions the
kinematics on m_gluino = 1600 GeV.  The patterns of a point that was never simulated are a
mixture of the pattern distributions of the two nearest trained points of the family
(Euclidean distance in standardised parameters), weighted by inverse distance: with one
parameter and a point between two trained ones this is linear interpolation of the pattern
probabilities in the parameter; at a trained point it is that point's distribution; outside
the trained range (``--force``) it is the nearest trained point's.  The range guard is the
caller's (:meth:`fastmc.points.ProcessSpace.resolve`, called by ``fastmc generate``).

No post-hoc repair.  Jet separation is built into the parameterisation by default
(``jet_azimuth: allowed``: each jet's azimuth is drawn inside the set its harder jets allow,
:mod:`fastmc.models.flow.azimuth`); an event whose jets are still not all separated by the
fitted jet radius (no allowed azimuth left, float32 rounding; or any violation with
``jet_azimuth: reference``) is rejected whole and its kinematics drawn again for the same
pattern; :meth:`FlowModel.generation_stats` counts drawn and rejected events (``fastmc
generate`` writes them into the output's metadata).  pT thresholds, |eta|
ranges, phi ranges, E >= pT cosh(eta) and the Dark Machines order hold by construction.  The
(eta, phi) -> (-eta, -phi) symmetry enters once: through the parameterisation
(``canonical_eta_sign``, the default: the orientation of each generated event drawn
uniformly) or, with ``canonical_eta_sign: false``, as training-data augmentation
(``augment``).  The reflection phi -> -phi, also exact, enters as training-data augmentation
with ``reflect_augment``.

Modes (recorded in the model directory's ``config.json``):

- ``autoregressive``: fully autoregressive spline transforms, best fidelity; sampling needs
  one network pass per dimension and transform (slow on CPU).
- ``coupling``: two passes per transform: the fast mode.
- ``matching``: no spline flow; conditional flow matching with a transformer over the object
  slots (:mod:`fastmc.models.flow.matching`): trained on the flow-matching loss (part
  ``cfm_mse``, not a likelihood), sampled by a fixed-step ODE (``ode_steps``, ``ode_solver``)
  from the same standard-normal noise.  Patterns, context, parameterisation, standardisation,
  dequantisation, augmentation and whole-event rejection are those of the other modes.

Sampling runs through :class:`fastmc.models.flow.inverse.FastInverse` (masked weights sliced
per pass, fused spline inverse, chunks of ``sample_chunk`` events; optionally bfloat16 matrix
products and a ``torch.compile``-d spline).  The flow inverse (chunk by chunk) and the
decoding (on pieces of up to ``decode_chunk`` events) run on ``torch.get_num_threads()``
threads with one torch thread each; both work event by event, so the events of a seed do not
depend on the thread count or the piece size.  Events are unweighted (weight 1); training ignores
event weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from fastmc.data.batch import RawBatch
from fastmc.errors import ConfigError, GenerationError, require
from fastmc.models.base import Condition, GenerativeModel, register_model
from fastmc.models.flow.config import FlowConfig
from fastmc.models.flow.inverse import FastInverse, build_spline_flow, map_chunks, single_threaded
from fastmc.models.flow.matching import VelocityField, cfm_loss, integrate
from fastmc.models.flow.physics import (
    FEATURES_PER_SLOT,
    Parameterisation,
    fit_parameterisation,
    jets_below_radius,
    objects_below_isolation,
)
from fastmc.models.flow.structure import PatternDistribution
from fastmc.models.flow.symmetry import mirror_events, reflect_events
from fastmc.points import ProcessSpace

__all__ = ["FlowConfig", "FlowModel"]

_RAW_FIELDS = ("types", "p4", "met", "met_phi", "weight", "process")


class FlowModel(GenerativeModel):
    """Pattern sampler + conditional spline flow over physics-aware slot parameters.

    Call :meth:`fit_data` on training events before training (the training loop does): it
    fits the parameterisation's thresholds, the pattern distribution and the standardisation.
    """

    name = "flow"

    def __init__(self, config: FlowConfig, *, processes: Any = ("unknown",)) -> None:
        super().__init__(config, processes=processes)
        if config.mode != "matching":
            require("zuko", "flows")
        self.layout = config.layout
        s, d = self.layout.n_slots, self.layout.dim
        #: process embedding width (0 for a one-process model, see the module docstring)
        self.process_dim = config.embedding if len(self.processes) > 1 else 0
        #: families and parameters of the process names; parameter width of the context
        self.space = ProcessSpace.from_names(self.processes)
        self.param_dim = len(self.space.param_names) if self.process_dim else 0
        self.context_dim = 2 * s + 7 + config.embedding + self.process_dim + self.param_dim
        self.embed = nn.Embedding(config.max_patterns, config.embedding)
        # one embedding row per family (= per process when no name carries parameters)
        self.process_embed = (nn.Embedding(len(self.space.families), self.process_dim)
                              if self.process_dim else None)
        families = [self.space.families.index(f) for f, _ in self.space.points]
        self.register_buffer("family_of", torch.tensor(families, dtype=torch.long),
                             persistent=False)
        self.register_buffer("param_table", self.space.labels()[:, len(self.space.families):],
                             persistent=False)
        #: the kinematics backbone: a zuko spline flow, or the matching velocity field
        self.flow: nn.Module | None = None
        self.velocity: VelocityField | None = None
        if config.mode == "matching":
            self.velocity = VelocityField(
                n_slots=s,
                context_dim=self.context_dim,
                dim=config.cfm_dim,
                layers=config.cfm_layers,
                heads=config.cfm_heads,
                ff=config.cfm_ff_width,
                dropout=config.cfm_dropout,
            )
        else:
            self.flow = build_spline_flow(
                d,
                self.context_dim,
                passes=None if config.mode == "autoregressive" else 2,
                transforms=config.transforms,
                hidden=config.hidden,
                layers=config.layers,
                bins=config.bins,
                bound=config.spline_bound,
                slope=config.spline_slope,
                linear=config.linear_mixing,
                split=config.coupling_split if config.mode == "coupling" else "features",
            )
        self.register_buffer("x_mean", torch.zeros(d))
        self.register_buffer("x_std", torch.ones(d))
        self.register_buffer(
            "pt_threshold", torch.full((4,), config.default_pt_threshold, dtype=torch.float64)
        )
        self.register_buffer("eta_max", torch.full((4,), config.default_eta_max, dtype=torch.float64))
        self.register_buffer("jet_radius", torch.tensor(config.default_jet_radius, dtype=torch.float64))
        self.patterns: PatternDistribution | None = None
        #: fitted bound of the mass parameter per group float64 [4] (None: unbounded)
        self.mass_max: torch.Tensor | None = None
        #: fitted isolation radius from jets per group float64 [4] (None: not built in)
        self.isolation_radius: torch.Tensor | None = None
        #: training events per (process, pattern) int64 [n_processes, n_patterns]
        self.process_counts: torch.Tensor | None = None
        self._inverse_cache: tuple[tuple[Any, ...], FastInverse] | None = None
        self._drawn = 0
        self._rejected = 0

    @classmethod
    def saved_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Settings whose default changed, as models saved before the change used them: the
        plain azimuth (``jet_azimuth: reference``), the mirror as augmentation
        (``canonical_eta_sign: false``), no isolation from jets (``object_isolation:
        false``), no reflection augmentation and the muons' radius at ``radius_quantile``."""
        out = dict(config)
        out.setdefault("jet_azimuth", "reference")
        out.setdefault("canonical_eta_sign", False)
        out.setdefault("object_isolation", False)
        out.setdefault("reflect_augment", False)
        if "radius_quantile" in out:
            out.setdefault("muon_isolation_quantile", out["radius_quantile"])
        return out

    # ------------------------------------------------------------------ fitted state
    @property
    def parameterisation(self) -> Parameterisation:
        return Parameterisation(
            layout=self.layout,
            pt_threshold=tuple(self.pt_threshold.tolist()),  # type: ignore[arg-type]
            eta_max=tuple(self.eta_max.tolist()),  # type: ignore[arg-type]
            jet_radius=float(self.jet_radius),
            mass_max=None if self.mass_max is None else tuple(self.mass_max.tolist()),  # type: ignore[arg-type]
            isolation_radius=(None if self.isolation_radius is None  # type: ignore[arg-type]
                              else tuple(self.isolation_radius.tolist())),
            **self.config.tolerances,
        )

    def _require_fitted(self) -> PatternDistribution:
        if self.patterns is None:
            raise ValueError(
                "the flow has not seen data: call fit_data(training events) first "
                "(fastmc train does), or load a trained model directory"
            )
        return self.patterns

    def fit_data(self, raw: RawBatch) -> None:
        """Fit thresholds, jet radius, pattern distribution and standardisation on ``raw``."""
        raw = raw.to("cpu")
        c = self.config
        par = fit_parameterisation(
            raw,
            self.layout,
            pt_margin=c.pt_margin,
            eta_margin=c.eta_margin,
            radius_margin=c.radius_margin,
            radius_quantile=c.radius_quantile if c.jet_azimuth == "allowed" else 0.0,
            mass_margin=c.mass_margin,
            isolation=c.object_isolation,
            muon_isolation_quantile=c.muon_isolation_quantile,
            default_jet_radius=c.default_jet_radius,
            default_pt_threshold=c.default_pt_threshold,
            default_eta_max=c.default_eta_max,
            **c.tolerances,
        )
        self.pt_threshold.copy_(torch.tensor(par.pt_threshold, dtype=torch.float64))
        self.eta_max.copy_(torch.tensor(par.eta_max, dtype=torch.float64))
        self.jet_radius.fill_(par.jet_radius)
        self.mass_max = None if par.mass_max is None else torch.tensor(par.mass_max, dtype=torch.float64)
        self.isolation_radius = (None if par.isolation_radius is None
                                 else torch.tensor(par.isolation_radius, dtype=torch.float64))
        enc = par.encode(raw)
        # by the quantile's definition at most radius_quantile of the training events (and
        # objects) are below the radius: counted in config.json (info), not warned about
        self.info["training_events_below_jet_radius"] = jets_below_radius(raw, par)
        self.info["training_objects_below_isolation"] = objects_below_isolation(raw, par)
        dropped = int((enc["dropped"] > 0).sum())
        if dropped:
            warnings.warn(
                f"{dropped} of {len(raw)} training events ({100 * dropped / len(raw):.2f}%) have "
                "more objects of a group than the flow has slots; their softest objects are "
                "dropped. Raise max_jets/max_electrons/max_muons/max_photons to keep them.",
                stacklevel=2,
            )
        slot_types = enc["slot_types"]
        types, _ = self.layout.from_slots(slot_types, torch.zeros(*slot_types.shape, 4), self.layout.n_slots)
        self.patterns = PatternDistribution.fit(types)
        idx = self.patterns.index_of(types)
        n_pat, n_proc = self.patterns.n_patterns, len(self.processes)
        codes = raw.process.long().clamp(0, n_proc - 1) * n_pat + idx
        self.process_counts = torch.bincount(codes, minlength=n_proc * n_pat).reshape(n_proc, n_pat)
        x, present = enc["x"], enc["present"]
        x = self._dequantise(x, present, torch.Generator().manual_seed(0))
        n = present.sum(dim=0).clamp_min(1)
        mean = (x * present).sum(dim=0) / n
        var = (((x - mean) ** 2) * present).sum(dim=0) / n
        has = present.sum(dim=0) > 1
        self.x_mean.copy_(torch.where(has, mean, torch.zeros_like(mean)).float())
        self.x_std.copy_(torch.where(has, var.sqrt().clamp_min(1e-3), torch.ones_like(var)).float())
        self.info["parameterisation"] = par.to_dict()
        self.info["n_patterns"] = self.patterns.n_patterns
        self.info["events_with_dropped_objects"] = dropped
        self.info["fit_events"] = len(raw)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        pats = self._require_fitted()
        out = pats.to_tensors("structure.")
        if self.process_counts is not None:
            out["structure.process_counts"] = self.process_counts.clone()
        if self.mass_max is not None:
            out["param.mass_max"] = self.mass_max.clone()
        if self.isolation_radius is not None:
            out["param.isolation_radius"] = self.isolation_radius.clone()
        return out

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.patterns = PatternDistribution.from_tensors(tensors, "structure.")
        counts = tensors.get("structure.process_counts")
        self.process_counts = None if counts is None else counts.to("cpu", torch.long)
        bound = tensors.get("param.mass_max")  # absent in models saved before it: unbounded
        self.mass_max = None if bound is None else bound.to("cpu", torch.float64)
        iso = tensors.get("param.isolation_radius")  # absent in models saved before it
        self.isolation_radius = None if iso is None else iso.to("cpu", torch.float64)

    @property
    def process_conditional(self) -> bool:
        """True: per-process patterns and a process embedding (or one process)."""
        return len(self.processes) == 1 or (
            self.process_embed is not None and self.process_counts is not None
        )

    @property
    def param_conditional(self) -> bool:
        """True: trained on several parameter points of a family (see the module docstring)."""
        return self.param_dim > 0 and self.process_conditional

    def _sample_patterns(self, n: int, proc: int, generator: torch.Generator | None,
                         mix: dict[int, float] | None = None) -> torch.Tensor:
        """Pattern indices int64 [n] drawn from process ``proc``'s pattern distribution, or
        from the mixture ``mix`` {process: weight} of processes' distributions."""
        pats = self._require_fitted()
        if self.process_counts is None or len(self.processes) == 1:
            return pats.sample(n, generator=generator)
        dev = generator.device if generator is not None else torch.device("cpu")
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=dev)
        probs = torch.zeros(self.process_counts.shape[1], dtype=torch.float64)
        for p, w in (mix or {proc: 1.0}).items():
            counts = self.process_counts[p].to(torch.float64)
            if float(counts.sum()) == 0:
                raise ValueError(f"no training events of process {self.processes[p]!r} were seen")
            probs += w * counts / counts.sum()
        probs = probs.to(dev)
        return torch.multinomial(probs / probs.sum(), n, replacement=True, generator=generator)

    def _point(self, condition: Condition) -> tuple[int, torch.Tensor, dict[int, float]]:
        """A parameter point's nearest trained process (the output's process code), its
        standardised parameters [param_dim] (on the model's device) and the pattern mixture
        {process: weight} (module docstring); the range check is the caller's."""
        if not self.param_conditional:
            raise ConfigError(f"model {self.name!r} is not conditioned on physical parameters")
        family, params = condition.process, dict(condition.params or {})
        same = self.space.points_of(family)
        nf = len(self.space.families)
        row = torch.tensor(self.space.label_row(family, params)[nf:], dtype=torch.float64)
        table = self.param_table.to("cpu", torch.float64)
        dist = {i: float((table[i] - row).norm()) for i in same}
        near = sorted(same, key=lambda i: (dist[i], i))[:2]
        trained = self.space.trained(family)
        inside = all(trained[k][0] <= float(v) <= trained[k][-1] for k, v in params.items()
                     if k in trained)
        if len(near) == 1 or dist[near[0]] < 1e-9 or not inside:
            mix = {near[0]: 1.0}
        else:
            a, b = near
            mix = {a: dist[b] / (dist[a] + dist[b]), b: dist[a] / (dist[a] + dist[b])}
        return near[0], row.to(self.device, self.x_mean.dtype), mix

    # ------------------------------------------------------------------ conditioning
    def _slot_types(self, pattern_index: torch.Tensor) -> torch.Tensor:
        pats = self._require_fitted()
        types = pats.types(pattern_index, max(pats.width, 1))
        zeros = torch.zeros(*types.shape, 4, device=types.device)
        slot_types, _, _ = self.layout.to_slots(types, zeros)
        return slot_types

    def context(self, slot_types: torch.Tensor, pattern_index: torch.Tensor,
                process: torch.Tensor | None = None,
                params: torch.Tensor | None = None) -> torch.Tensor:
        """Flow context [B, C] from slot types int [B, S], pattern indices int [B] (-1 unknown)
        and process codes int [B] (multi-process models; None: process 0).

        Parameter-conditional models (module docstring) append the standardised parameters
        [B, param_dim] of each event's process, or ``params`` (float [param_dim] or
        [B, param_dim]: a parameter point, e.g. one never simulated) instead; the process
        embedding is then the family's.
        """
        dt = self.x_mean.dtype
        present = (slot_types > 0).to(dt)
        # second type of a group: b (2), e+ (4), m+ (6); photons have one type
        second = (slot_types % 2 == 0).to(dt) * present
        counts = torch.stack([(slot_types == c).sum(dim=1) for c in range(1, 8)], dim=1).to(dt)
        row = torch.where(
            (pattern_index >= 0) & (pattern_index < self.config.max_patterns - 1),
            pattern_index + 1,
            torch.zeros_like(pattern_index),
        )
        parts = [present, second, counts / 4.0, self.embed(row)]
        if self.process_embed is not None:
            if process is None:
                process = torch.zeros_like(pattern_index)
            process = process.to(pattern_index.device).long()
            parts.append(self.process_embed(self.family_of.to(process.device)[process]))
            if self.param_dim:
                if params is None:
                    rows = self.param_table.to(process.device, dt)[process]
                else:
                    rows = params.to(process.device, dt).expand(len(process), self.param_dim)
                parts.append(rows)
        return torch.cat(parts, dim=1)

    def _dequantise(
        self, x: torch.Tensor, present: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Masses at the floor (E = pT cosh(eta) within mass_floor) made uniform in (0, floor)."""
        mass_cols = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        mass_cols[3 : FEATURES_PER_SLOT * self.layout.n_slots : FEATURES_PER_SLOT] = True
        at_floor = present & mass_cols & (x <= math.log(self.config.mass_floor) + 1e-9)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.where(at_floor, x + u.clamp_min(1e-12).log(), x)

    # ------------------------------------------------------------------ GenerativeModel
    def training_loss(
        self, raw: RawBatch, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean negative log-likelihood per event of the standardised parameters (nats);
        in matching mode the flow-matching loss (mean squared velocity error per present
        dimension, part ``"cfm_mse"``, :func:`fastmc.models.flow.matching.cfm_loss`).

        With ``augment`` (in training mode, without ``canonical_eta_sign``), each event is
        mirrored (eta, phi) -> (-eta, -phi) with probability 1/2 before encoding; with
        ``reflect_augment`` (in training mode) each is then reflected phi -> -phi with
        probability 1/2.
        """
        self._require_fitted()
        if self.config.augment and self.training and not self.config.canonical_eta_sign:
            flip = torch.rand(len(raw), generator=generator, device=raw.device) < 0.5
            raw = mirror_events(raw, flip)
        if self.config.reflect_augment and self.training:
            flip = torch.rand(len(raw), generator=generator, device=raw.device) < 0.5
            raw = reflect_events(raw, flip)
        enc = self.parameterisation.encode(raw)
        x, present = enc["x"], enc["present"]
        dev = x.device
        x = self._dequantise(x, present, generator)
        z = (x.float() - self.x_mean) / self.x_std
        slot_types = enc["slot_types"]
        if self.velocity is not None:
            ctx = self.context(slot_types, self._pattern_index(slot_types), raw.process)
            velocity = self.velocity

            def field(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return velocity(xt, t, slot_types, ctx, present).float()

            mse = cfm_loss(field, z, present, generator)
            return mse, {"cfm_mse": float(mse.detach())}
        noise = torch.randn(z.shape, generator=generator, device=dev, dtype=z.dtype)
        z = torch.where(present, z, noise)
        ctx = self.context(slot_types, self._pattern_index(slot_types), raw.process)
        nll = -self.flow(ctx).log_prob(z).mean()
        dim = z.shape[1]
        return nll, {"nll": float(nll.detach()), "nll_per_dim": float(nll.detach()) / dim}

    def _pattern_index(self, slot_types: torch.Tensor) -> torch.Tensor:
        """Pattern index int64 [B] (-1: not a training pattern) of slot types int [B, S]."""
        pats = self._require_fitted()
        zeros = torch.zeros(*slot_types.shape, 4, device=slot_types.device)
        packed, _ = self.layout.from_slots(slot_types, zeros, self.layout.n_slots)
        return pats.index_of(packed)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
    ) -> RawBatch:
        """``n`` events (RawBatch on the model's device, GeV) from the standard-normal base.

        The pattern of each event is drawn once; an event whose jets are not all separated by
        the jet radius is rejected whole (its kinematics, nothing is moved) and its kinematics
        drawn again for the same pattern, so the pattern distribution stays exact (rejecting
        the pattern too would favour patterns with few jets); a pass may draw several
        candidates per event at once (:meth:`_candidates`).  Drawn and rejected events
        are counted in :meth:`generation_stats`.  Raises :class:`GenerationError` when more than
        ``max_draw_factor`` x n (+1000) draws do not give ``n`` events.
        """
        params, mix = None, None
        if condition is not None and condition.params is not None:
            proc, params, mix = self._point(condition)
        else:
            proc = self.process_index(condition)
        self._require_fitted()
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        dev = self.device
        was_training = self.training
        self.eval()
        # per-event work runs chunk by chunk on torch.get_num_threads() threads (one torch
        # thread each); the light work around it in this thread single-threaded
        workers = torch.get_num_threads() if dev.type == "cpu" else 1
        try:
            with single_threaded():
                index = self._sample_patterns(n, proc, generator, mix).to(dev)
                out = self._draw(index[:0], generator, proc, params)[0] if n == 0 else None
                drawn, limit = 0, self.config.max_draw_factor * n + 1000
                todo = torch.arange(n, device=dev)
                while len(todo):
                    if drawn >= limit:
                        self._count(drawn, n - len(todo))
                        raise GenerationError(
                            f"{len(todo)} of {n} events still have a pair of jets closer than the "
                            f"jet radius ({float(self.jet_radius):.3f}) after {drawn} draws; the "
                            "flow is not trained enough. Train longer (or on more events)."
                        )
                    got, pick, tries = self._candidates(index[todo], n, generator, proc, params, workers)
                    drawn += tries
                    if out is None:  # first pass: the events' tensors, filled in below
                        out = RawBatch(**{f: getattr(pick, f).new_zeros((n, *getattr(pick, f).shape[1:]))
                                          for f in _RAW_FIELDS})
                    for f in _RAW_FIELDS:
                        getattr(out, f)[todo[got]] = getattr(pick, f)
                    todo = todo[~got]
                self._count(drawn, n)
                out.process = torch.full((n,), proc, dtype=torch.long, device=dev)
                return out
        finally:
            self.train(was_training)

    def _candidates(
        self, index: torch.Tensor, n: int, generator: torch.Generator | None, proc: int,
        params: torch.Tensor | None = None, workers: int = 1,
    ) -> tuple[torch.Tensor, RawBatch, int]:
        """Kinematics for the events (not yet accepted) of patterns ``index`` int [m], of a
        :meth:`sample` call for ``n`` events: one pass of the rejection sampler.

        One candidate per event, except with ``sample_compile``: then the pass is rounded up
        to whole chunks of ``sample_chunk`` (the compiled shape; shorter chunks run the eager
        spline) as long as that is at most 1.5 m candidates (about the draws per event the
        rejection needs anyway), so some events get a second candidate.  Candidate ``c`` of
        event ``i`` is row ``c m + i``, and each event takes its first valid candidate, which
        is exactly rejection sampling one candidate after the other (the surplus candidates
        are never looked at and not counted as draws).  Without ``sample_compile`` the
        passes draw what the one-at-a-time sampler of earlier versions drew.  ``params``: as
        in :meth:`_draw`.  Returns ``got`` bool [m] (an event found a valid candidate), the
        chosen events (RawBatch [got.sum()]) and the draws counted (candidates up to and
        including the chosen one; all candidates of an event without).
        """
        m = len(index)
        chunk = self.config.sample_chunk
        total = m
        if self.config.sample_compile and self.velocity is None:
            total = max(m, min(-(-m // chunk) * chunk, 3 * m // 2))
        copies = -(-total // m)
        cand = index.repeat(copies)[:total]
        again, ok = self._draw(cand, generator, proc, params, workers=workers)
        okp = torch.zeros(copies * m, dtype=torch.bool, device=ok.device)
        okp[:total] = ok
        okp = okp.view(copies, m)
        got = okp.any(dim=0)
        first = torch.argmax(okp.to(torch.uint8), dim=0)
        have = torch.full((copies * m,), False, device=ok.device)
        have[:total] = True
        tries = torch.where(got, first + 1, have.view(copies, m).sum(dim=0))
        rows = (first * m + torch.arange(m, device=ok.device))[got]
        pick = RawBatch(**{f: getattr(again, f)[rows] for f in _RAW_FIELDS})
        return got, pick, int(tries.sum())

    def _count(self, drawn: int, accepted: int) -> None:
        self._drawn += drawn
        self._rejected += drawn - accepted

    def generation_stats(self) -> dict[str, int]:
        """Events drawn and rejected (jets closer than the jet radius) by every :meth:`sample`
        call of this model object so far: ``{"drawn": ..., "rejected": ...}``."""
        return {"drawn": self._drawn, "rejected": self._rejected}

    def _draw(
        self, index: torch.Tensor, generator: torch.Generator | None, proc: int = 0,
        params: torch.Tensor | None = None, *, workers: int = 1,
    ) -> tuple[RawBatch, torch.Tensor]:
        """Decoded events (before rejection) of patterns ``index`` int [m] and their validity
        mask bool [m] (every pair of jets at least the jet radius apart); ``params``
        [param_dim]: a parameter point's standardised parameters (see :meth:`context`).  The
        noise is drawn here; the flow inverse and the decoding run chunk by chunk on
        ``workers`` threads."""
        dev = self.device
        m = len(index)
        slot_types = self._slot_types(index)
        ctx = self.context(slot_types, index, torch.full_like(index, proc), params)
        z = torch.randn(m, self.layout.dim, generator=generator, device=dev)
        phi_ref = math.pi - 2 * math.pi * torch.rand(
            m, generator=generator, device=dev, dtype=torch.float64
        )
        sign = None
        if self.config.canonical_eta_sign:
            u = torch.rand(m, generator=generator, device=dev, dtype=torch.float64)
            sign = torch.where(u < 0.5, -1.0, 1.0).to(torch.float64)
        # everything below is per event: piece by piece (:meth:`_piece`), on `workers` threads
        chunk, par = self.config.sample_chunk, self.parameterisation
        if self.velocity is None:
            inverse = self._fast_inverse(dev)
            if m:
                inverse.warm_up(chunk, ctx, workers)

            def kinematics(sl: slice) -> torch.Tensor:
                return inverse(ctx[sl], z[sl], chunk=chunk, workers=1)
        else:

            def kinematics(sl: slice) -> torch.Tensor:
                return self._integrate(ctx[sl], z[sl], slot_types[sl])

        def work(sl: slice) -> tuple[RawBatch, torch.Tensor]:
            x = kinematics(sl) if m else z
            x = x * self.x_std + self.x_mean
            return par.decode(x, slot_types[sl], phi_ref[sl], max_objects=self.config.max_objects,
                              eta_sign=None if sign is None else sign[sl])

        parts = map_chunks(work, m, self._piece(m, workers), workers=workers)
        if len(parts) == 1:
            return parts[0]
        raws, valid = zip(*parts, strict=True)
        return RawBatch(**{f: torch.cat([getattr(r, f) for r in raws]) for f in _RAW_FIELDS}), torch.cat(valid)

    def _piece(self, m: int, workers: int) -> int:
        """Events per piece of sampling work for ``m`` events on ``workers`` threads: whole
        chunks of ``sample_chunk``, the chunks split evenly between the workers, at most
        ``decode_chunk`` events (at least one chunk)."""
        chunk = self.config.sample_chunk
        chunks = math.ceil(m / chunk)
        per_worker = math.ceil(chunks / max(workers, 1))
        return chunk * max(1, min(per_worker, self.config.decode_chunk // chunk))

    def _fast_inverse(self, device: torch.device) -> FastInverse:
        """The :class:`FastInverse` of the current weights (rebuilt when they change)."""
        if self.flow is None:
            raise ValueError("the flow inverse needs mode autoregressive or coupling")
        dtype = torch.bfloat16 if self.config.sample_precision == "bfloat16" else torch.float32
        params = list(self.flow.parameters())
        key = (dtype, self.config.sample_compile, device, *[(p.data_ptr(), p._version) for p in params])
        if self._inverse_cache is None or self._inverse_cache[0] != key:
            self._inverse_cache = (
                key, FastInverse(self.flow, matmul_dtype=dtype, compile=self.config.sample_compile)
            )
        return self._inverse_cache[1]

    def _kinematics(
        self, context: torch.Tensor, z: torch.Tensor, slot_types: torch.Tensor
    ) -> torch.Tensor:
        """Standardised parameters [B, D] from base noise ``z`` [B, D], context [B, C] and
        slot types int [B, S]: the flow inverse, or in matching mode the ODE from noise."""
        if self.velocity is None:
            return self._inverse(context, z)
        return self._integrate(context, z, slot_types)

    def _integrate(
        self, context: torch.Tensor, z: torch.Tensor, slot_types: torch.Tensor
    ) -> torch.Tensor:
        """Matching mode: ``ode_steps`` steps of ``ode_solver`` from ``z`` (t=0) to t=1, in
        chunks of ``sample_chunk`` events (velocity field under bfloat16 autocast with
        ``sample_precision: bfloat16``; the ODE state stays float32)."""
        velocity = self.velocity
        if velocity is None:
            raise ValueError("_integrate needs mode: matching")
        c = self.config
        present = self.parameterisation.presence(slot_types)
        bf16 = c.sample_precision == "bfloat16"
        outs = []
        n = len(z)
        for lo in range(0, n, c.sample_chunk):
            hi = min(lo + c.sample_chunk, n)
            st, ctx, pr = slot_types[lo:hi], context[lo:hi], present[lo:hi]

            def field(x: torch.Tensor, t: torch.Tensor, st=st, ctx=ctx, pr=pr) -> torch.Tensor:
                with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
                    return velocity(x, t, st, ctx, pr).float()

            # no_grad here too: grad mode is per thread, and this runs on sample's worker threads
            with torch.no_grad():
                outs.append(integrate(field, z[lo:hi].float(), steps=c.ode_steps, solver=c.ode_solver))
        return torch.cat(outs) if outs else z

    def _inverse(self, context: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Flow inverse: standardised parameters [B, D] from base noise ``z`` [B, D]."""
        return self._fast_inverse(z.device)(context, z, chunk=self.config.sample_chunk)

    def core_runner(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Callable[[], int] | None:
        """The bare flow inverse (matching mode: the ODE integration) on pre-drawn noise and
        pattern context (for ``fastmc bench``)."""
        pats = self._require_fitted()
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            index = pats.sample(batch_size, generator=gen).to(device)
            slot_types = self._slot_types(index)
            ctx = self.context(slot_types, index)
            z = torch.randn(batch_size, self.layout.dim, generator=gen, device=device)

        def run() -> int:
            with torch.no_grad():
                self._kinematics(ctx, z, slot_types)
            return batch_size

        return run


register_model("flow", FlowConfig, FlowModel)
