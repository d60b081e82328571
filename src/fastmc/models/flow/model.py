"""Structure-first conditional normalizing flow (issue 8), registered as ``"flow"``.

Generation runs in two steps:

1. **Structure**: an object-type pattern (e.g. ``j j b j b m+``) is drawn from the empirical
   pattern distribution of the training events (:class:`fastmc.models.flow.structure.PatternDistribution`),
   so object counts per type are exact by construction and every pattern is a training pattern.
2. **Kinematics**: a conditional neural spline flow (zuko ``NSF``) draws the physics-aware
   parameters of :mod:`fastmc.models.flow.physics` (D = 4 x slots + 2 numbers: pT, eta, phi and mass
   parameters per object slot, log MET and the MET azimuth), conditioned on the pattern
   (which slots are filled and with which type, counts per type, and a learned embedding of
   the ``max_patterns - 1`` most frequent patterns; rarer ones share one embedding).  Absent
   slots are filled with standard-normal noise in training and dropped when decoding, so the
   flow never models padding.  A global azimuthal rotation is drawn uniformly per event.

Modes (recorded in the model directory's ``config.json``):

- ``autoregressive``: fully autoregressive spline transforms, best fidelity; sampling needs
  one network pass per dimension and transform (slow on CPU, scales well with batch size).
- ``coupling``: two-pass (coupling) spline transforms for fast bulk generation.

Decoded events are physical by construction (see :mod:`fastmc.models.flow.physics`): known types,
E > pT cosh(eta), phi in (-pi, pi], Dark Machines order, pT above the fitted thresholds and
jets separated by at least the fitted jet radius.  Events are unweighted (weight 1); training
ignores event weights.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from fastmc.config import check_config, setting
from fastmc.data.batch import RawBatch
from fastmc.errors import require
from fastmc.events import DEFAULT_MAX_OBJECTS
from fastmc.kinematics import wrap_angle
from fastmc.models.base import Condition, GenerativeModel, register_model
from fastmc.models.flow.physics import (
    FEATURES_PER_SLOT,
    MASS_FLOOR,
    Parameterisation,
    SlotLayout,
    fit_parameterisation,
)
from fastmc.models.flow.structure import PatternDistribution

__all__ = ["FlowConfig", "FlowModel"]

MODES = ("autoregressive", "coupling")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlowConfig:
    """Settings of the structure-first flow.

    Attributes
    ----------
    mode : str                "autoregressive" (default) or "coupling"
    transforms : int          spline transforms in the flow (4; the ttbar coupling model in
                              docs/results.md used 6)
    hidden : int              width of each transform's hidden layers (128)
    layers : int              hidden layers per transform (2)
    bins : int                spline bins (8)
    max_jets, max_electrons, max_muons, max_photons : int
                              object slots per group (12, 2, 2, 2); softer objects beyond
                              them are dropped in training (fit_data warns with the share)
    embedding : int           size of the learned pattern embedding (16)
    max_patterns : int        rows of the embedding table; the most frequent patterns get
                              their own row, the rest share row 0 (256)
    max_objects : int         K, width of generated events (19)
    augment : bool            mirror half of the events by the rotation of pi about the x
                              axis, (eta, phi) -> (-eta, -phi), an exact symmetry of pp
                              collisions, in training and in generation (True)
    """

    mode: Literal["autoregressive", "coupling"] = "autoregressive"
    transforms: int = setting(4, ge=1)
    hidden: int = setting(128, ge=1)
    layers: int = setting(2, ge=1)
    bins: int = setting(8, ge=1)
    max_jets: int = setting(12, ge=0)
    max_electrons: int = setting(2, ge=0)
    max_muons: int = setting(2, ge=0)
    max_photons: int = setting(2, ge=0)
    embedding: int = setting(16, ge=1)
    max_patterns: int = setting(256, ge=1)
    max_objects: int = setting(DEFAULT_MAX_OBJECTS, ge=1)
    augment: bool = True

    def __post_init__(self) -> None:
        check_config(self)

    @property
    def layout(self) -> SlotLayout:
        return SlotLayout(
            jets=self.max_jets,
            electrons=self.max_electrons,
            muons=self.max_muons,
            photons=self.max_photons,
        )


def _coupling_flow(features: int, context: int, config: FlowConfig) -> nn.Module:
    """A two-pass (coupling) spline flow whose halves differ from transform to transform.

    zuko's ``NSF(passes=2)`` alternates one ordering and its reverse, so the same two halves
    of the features are split in every transform and features inside one half never condition
    on each other.  Here transform i uses a fixed pseudo-random permutation (seed i), so every
    pair of features lands in different halves in some transform.
    """
    from functools import partial

    import numpy as np
    from zuko.distributions import DiagNormal
    from zuko.flows import Flow, UnconditionalDistribution
    from zuko.flows.autoregressive import MaskedAutoregressiveTransform
    from zuko.transforms import MonotonicRQSTransform

    transforms = [
        MaskedAutoregressiveTransform(
            features=features,
            context=context,
            passes=2,
            order=torch.as_tensor(np.random.default_rng(i).permutation(features)),
            univariate=partial(MonotonicRQSTransform, slope=1e-3),
            shapes=[(config.bins,), (config.bins,), (config.bins - 1,)],
            hidden_features=[config.hidden] * config.layers,
        )
        for i in range(config.transforms)
    ]
    base = UnconditionalDistribution(
        DiagNormal, loc=torch.zeros(features), scale=torch.ones(features), buffer=True
    )
    return Flow(transforms, base)


def _fast_inverse(flow: nn.Module, context: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """x from base noise ``z`` [B, D] for a zuko masked-autoregressive flow, block by block.

    Each transform computes its features in ``passes`` blocks (one feature per block when
    fully autoregressive, two halves for coupling).  Per block, the hidden layers of the
    transform's network run once and only the output rows (spline parameters) of that block's
    features are computed and inverted.  Same result as ``flow(context).transform.inv(z)``,
    which recomputes every feature's spline in each of its passes, several times faster.
    """
    from zuko.utils import unpack

    x = z
    for mt in reversed(list(flow.transform.transforms)):
        y, out = x, torch.zeros_like(x)
        layers = list(mt.hyper)
        hidden, last = nn.Sequential(*layers[:-1]), layers[-1]
        weight, bias = last.mask * last.weight, last.bias
        total = mt.total
        for block in torch.unique(mt.order).tolist():
            feats = (mt.order == block).nonzero()[:, 0]
            rows = (feats[:, None] * total + torch.arange(total, device=feats.device)).flatten()
            h = hidden(torch.cat([out, context], dim=-1))
            phi = nn.functional.linear(h, weight[rows], bias[rows]).unflatten(-1, (-1, total))
            out[:, feats] = mt.univariate(*unpack(phi, mt.shapes)).inv(y[:, feats])
        x = out
    return x


class FlowModel(GenerativeModel):
    """Pattern sampler + conditional spline flow over physics-aware slot parameters.

    Call :meth:`fit_data` on training events before training (the training loop does): it
    fits the parameterisation's thresholds, the pattern distribution and the standardisation.
    """

    name = "flow"

    def __init__(self, config: FlowConfig, *, processes: Any = ("unknown",)) -> None:
        super().__init__(config, processes=processes)
        zuko = require("zuko", "flows")
        self.layout = config.layout
        s, d = self.layout.n_slots, self.layout.dim
        self.context_dim = 2 * s + 7 + config.embedding
        self.embed = nn.Embedding(config.max_patterns, config.embedding)
        if config.mode == "autoregressive":
            self.flow = zuko.flows.NSF(
                features=d,
                context=self.context_dim,
                transforms=config.transforms,
                bins=config.bins,
                hidden_features=[config.hidden] * config.layers,
            )
        else:
            self.flow = _coupling_flow(d, self.context_dim, config)
        self.register_buffer("x_mean", torch.zeros(d))
        self.register_buffer("x_std", torch.ones(d))
        self.register_buffer("pt_threshold", torch.full((4,), 10.0, dtype=torch.float64))
        self.register_buffer("eta_max", torch.full((4,), 2.5, dtype=torch.float64))
        self.register_buffer("jet_radius", torch.tensor(0.4, dtype=torch.float64))
        self.patterns: PatternDistribution | None = None
        self.last_repair: dict[str, int] = {}

    # ------------------------------------------------------------------ fitted state
    @property
    def parameterisation(self) -> Parameterisation:
        return Parameterisation(
            layout=self.layout,
            pt_threshold=tuple(self.pt_threshold.tolist()),  # type: ignore[arg-type]
            eta_max=tuple(self.eta_max.tolist()),  # type: ignore[arg-type]
            jet_radius=float(self.jet_radius),
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
        par = fit_parameterisation(raw, self.layout)
        self.pt_threshold.copy_(torch.tensor(par.pt_threshold, dtype=torch.float64))
        self.eta_max.copy_(torch.tensor(par.eta_max, dtype=torch.float64))
        self.jet_radius.fill_(par.jet_radius)
        enc = par.encode(raw)
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
        return pats.to_tensors("structure.")

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.patterns = PatternDistribution.from_tensors(tensors, "structure.")

    # ------------------------------------------------------------------ conditioning
    def _slot_types(self, pattern_index: torch.Tensor) -> torch.Tensor:
        pats = self._require_fitted()
        types = pats.types(pattern_index, max(pats.width, 1))
        zeros = torch.zeros(*types.shape, 4, device=types.device)
        slot_types, _, _ = self.layout.to_slots(types, zeros)
        return slot_types

    def context(self, slot_types: torch.Tensor, pattern_index: torch.Tensor) -> torch.Tensor:
        """Flow context [B, C] from slot types int [B, S] and pattern indices int [B] (-1 unknown)."""
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
        return torch.cat([present, second, counts / 4.0, self.embed(row)], dim=1)

    def _dequantise(
        self, x: torch.Tensor, present: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Masses at the floor (E = pT cosh(eta) within 1e-6) made uniform in (0, floor)."""
        mass_cols = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
        mass_cols[3 : FEATURES_PER_SLOT * self.layout.n_slots : FEATURES_PER_SLOT] = True
        at_floor = present & mass_cols & (x <= math.log(MASS_FLOOR) + 1e-9)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.where(at_floor, x + u.clamp_min(1e-12).log(), x)

    def _angle_cols(self, dev: torch.device) -> torch.Tensor:
        """bool [D]: the eta and phi parameters (odd under (eta, phi) -> (-eta, -phi))."""
        cols = torch.zeros(self.layout.dim, dtype=torch.bool, device=dev)
        end = FEATURES_PER_SLOT * self.layout.n_slots
        cols[1:end:FEATURES_PER_SLOT] = True
        cols[2:end:FEATURES_PER_SLOT] = True
        cols[-1] = True
        return cols

    # ------------------------------------------------------------------ GenerativeModel
    def training_loss(
        self, raw: RawBatch, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean negative log-likelihood per event of the standardised parameters (nats)."""
        pats = self._require_fitted()
        par = self.parameterisation
        enc = par.encode(raw)
        x, present = enc["x"], enc["present"]
        dev = x.device
        x = self._dequantise(x, present, generator)
        if self.config.augment and self.training:
            flip = torch.rand(x.shape[0], generator=generator, device=dev) < 0.5
            x = torch.where(flip[:, None] & self._angle_cols(dev), -x, x)
        z = (x.float() - self.x_mean) / self.x_std
        noise = torch.randn(z.shape, generator=generator, device=dev, dtype=z.dtype)
        z = torch.where(present, z, noise)
        slot_types = enc["slot_types"]
        packed, _ = self.layout.from_slots(slot_types, torch.zeros(*slot_types.shape, 4, device=dev), self.layout.n_slots)
        index = pats.index_of(packed)
        ctx = self.context(slot_types, index)
        nll = -self.flow(ctx).log_prob(z).mean()
        dim = z.shape[1]
        return nll, {"nll": float(nll.detach()), "nll_per_dim": float(nll.detach()) / dim}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
    ) -> RawBatch:
        """``n`` events (RawBatch on the model's device, GeV) from the standard-normal base."""
        proc = self.process_index(condition)
        pats = self._require_fitted()
        dev = self.device
        was_training = self.training
        self.eval()
        try:
            index = pats.sample(n, generator=generator).to(dev)
            slot_types = self._slot_types(index)
            ctx = self.context(slot_types, index)
            z = torch.randn(n, self.layout.dim, generator=generator, device=dev)
            phi_ref = math.pi - 2 * math.pi * torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
            x = self._inverse(ctx, z) if n else z
            x = x * self.x_std + self.x_mean
            raw, repair = self.parameterisation.decode(
                x, slot_types, phi_ref, max_objects=self.config.max_objects
            )
            self.last_repair = repair
            raw.process = torch.full((n,), proc, dtype=torch.long, device=dev)
            return _mirror_half(raw, generator) if self.config.augment else raw
        finally:
            self.train(was_training)

    def _inverse(self, context: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Flow inverse: standardised parameters [B, D] from base noise ``z`` [B, D]."""
        return _fast_inverse(self.flow, context, z)

    def core_runner(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Callable[[], int] | None:
        """The bare flow inverse on pre-drawn noise and pattern context (for ``fastmc bench``)."""
        pats = self._require_fitted()
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            index = pats.sample(batch_size, generator=gen).to(device)
            ctx = self.context(self._slot_types(index), index)
            z = torch.randn(batch_size, self.layout.dim, generator=gen, device=device)

        def run() -> int:
            with torch.no_grad():
                self._inverse(ctx, z)
            return batch_size

        return run


def _mirror_half(raw: RawBatch, generator: torch.Generator | None) -> RawBatch:
    """Mirror a random half of the events: (eta, phi, METphi) -> (-eta, -phi, -METphi).

    The rotation by pi about the beam-transverse x axis is an exact symmetry of pp collisions;
    applying it to half of the generated events removes any eta or phi asymmetry the flow
    learnt.  pT, E, the object order and every dR are unchanged.  phi stays in (-pi, pi].
    """
    flip = torch.rand(len(raw), generator=generator, device=raw.device) < 0.5
    sign = torch.where(flip, -1.0, 1.0).to(raw.p4.dtype)

    p4 = raw.p4.clone()
    p4[..., 2] = p4[..., 2] * sign[:, None] + 0.0  # + 0.0 turns -0.0 (padding) into 0.0
    p4[..., 3] = wrap_angle(p4[..., 3] * sign[:, None] + 0.0)
    return dataclasses.replace(raw, p4=p4, met_phi=wrap_angle(raw.met_phi * sign + 0.0))


register_model("flow", FlowConfig, FlowModel)
