"""The theses' generators: beta-VAE and alpha-VAE (experiment II architecture).

Inputs come from :class:`fastmc.models.vae.encoding.Encoding` (default kind ``"thesis"``): object
types one-hot [B, K, 8] (class 0 = padding), object features [B, K, 4] = (log10 E/GeV,
log10 pT/GeV, eta, phi) and MET [B, 2] = (log10 MET/GeV, METphi).

Encoder
    one branch per input (types, features, MET), each Flatten -> ``branch_widths`` x (Dense +
    ReLU) (default 2 x 512); concatenate; ``trunk_widths`` x (Dense + ReLU) (2 x 512);
    Dense(2 x latent) + BatchNorm; then Dense(latent) heads for the mean and (beta variant)
    the log-variance.
Variator
    beta: z = mu + eps * exp(0.5 logvar), loss term beta * KL(q(z|x) || N(0, 1));
    alpha: z = mu + N(0, alpha^2) noise, no KL term (the alpha variant has no log-variance
    head).
Process label (``process_input``, on by default)
    with several processes the label of each event's process is concatenated to the encoder's
    branch outputs (before the trunk) and to the latent code (before the decoder): a
    conditional VAE, so ``sample(condition=Condition(process="ttbar"))`` decodes ttbar events
    from any latent prior.  The label (:class:`fastmc.points.ProcessSpace`) is the one-hot
    family followed by the standardised physical parameters of the point, so a model trained
    on ``gluino_01@m_gluino=1000``, ``...=1400``, ``...=1800`` also decodes
    ``Condition(process="gluino_01", params={"m_gluino": 1600})``.  With one process there is
    no label input.
Leading observable (``lead``: "met" or "ht"; off by default)
    log10 of the event's MET or HT (GeV), standardised, is one more input of the encoder trunk
    and the decoder.  ``fit_data`` stores its quantiles per process (``lead_quantiles``
    [P, 257]); ``sample`` draws it by inverse-CDF sampling, truncated to
    ``Condition.lead_range`` (a ``--where`` region's bounds on it), so a region in the tail of
    MET is reached without generating the bulk (the faster region path).  The decoded MET or HT
    is the decoder's own output, not the drawn value: the caller still applies the region.
Decoder
    ``decoder_widths`` x (Dense + ReLU) (2 x 512), then three heads, each Dense(``head_width``)
    + ReLU -> Dense: types (K x 8 logits, softmax), features (K x 4), MET (2).
Loss
    categorical cross-entropy of the types (mean over the B x K slots) + MSE of the features
    (mean over B x K x 4, padding slots included: their target is 0) + MSE of MET (mean over
    B x 2) + beta x KL (summed over latent dimensions, mean over events).

Latent size: 80 (``latent_dim``).  The theses name both 80 and 160; the layer before the mean
and log-variance heads is Dense(2 x latent) = 160 units, which reads as "160" where the text
describes that layer and "80" where it describes the latent space, so 80 is the latent size
consistent with both.  It also keeps the decoder at the ~2.4 MFLOP per event the performance
targets assume and makes a full-covariance mixture prior 4x cheaper to fit than at 160.

The model holds no I/O: saving and loading is :mod:`fastmc.models.modeldir`'s job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from fastmc.data.batch import RawBatch
from fastmc.errors import ConfigError
from fastmc.models.base import Condition, GenerativeModel, LatentVariableMixin, register_model
from fastmc.models.vae.config import AlphaVAEConfig, BetaVAEConfig, VAEConfig
from fastmc.models.vae.encoding import Encoding, EncodingConfig
from fastmc.points import ProcessSpace

__all__ = ["VAE", "AlphaVAE", "AlphaVAEConfig", "BetaVAE", "BetaVAEConfig", "VAEConfig"]


#: quantiles of the leading observable kept per process (``lead``)
_N_QUANTILES = 257


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation (numpy.interp) of ``x`` on increasing ``xp`` -> ``fp``."""
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    t = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-300), torch.zeros_like(x))
    return f0 + t.clamp(0, 1) * (f1 - f0)


def _mlp(n_in: int, widths: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(n_in, w), nn.ReLU()]
        n_in = w
    return nn.Sequential(*layers), n_in


class VAE(LatentVariableMixin, GenerativeModel):
    """Common machinery of :class:`BetaVAE` and :class:`AlphaVAE` (see the module docstring)."""

    prior_kinds: ClassVar[tuple[str, ...]] = ("normal", "bgmm", "gmm", "truth")
    has_logvar: ClassVar[bool] = True
    n_classes = Encoding.n_classes
    n_features = Encoding.n_features

    def __init__(self, config: VAEConfig, *, processes: Any = ("unknown",)) -> None:
        super().__init__(config, processes=processes)
        self.priors: dict[tuple[str, str], Any] = {}
        c = config
        k = c.max_objects
        self.encoding = Encoding(
            EncodingConfig(kind=c.encoding, max_objects=k, standardize=c.standardize)
        )
        self.branch_types, w_t = _mlp(k * self.n_classes, c.branch_widths)
        self.branch_features, w_f = _mlp(k * self.n_features, c.branch_widths)
        self.branch_met, w_m = _mlp(Encoding.met_dim, c.branch_widths)
        #: process label width (0: no label input, see the module docstring)
        self.space = ProcessSpace.from_names(self.processes)
        multi = c.process_input and len(self.processes) > 1
        self.n_labels = self.space.label_dim if multi else 0
        self.register_buffer("label_table", self.space.labels(), persistent=False)
        self.n_lead = 0 if c.lead == "none" else 1
        if self.n_lead:  # (not registered without lead: older model directories still load)
            self.register_buffer("lead_quantiles", torch.zeros(len(self.processes), _N_QUANTILES,
                                                               dtype=torch.float64))
            self.register_buffer("lead_scale", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.trunk, w = _mlp(w_t + w_f + w_m + self.n_labels + self.n_lead, c.trunk_widths)
        self.pre_latent = nn.Sequential(nn.Linear(w, 2 * c.latent_dim), nn.BatchNorm1d(2 * c.latent_dim))
        self.mean_head = nn.Linear(2 * c.latent_dim, c.latent_dim)
        self.logvar_head = nn.Linear(2 * c.latent_dim, c.latent_dim) if self.has_logvar else None
        self.decoder, wd = _mlp(c.latent_dim + self.n_labels + self.n_lead, c.decoder_widths)
        self.head_types = nn.Sequential(
            nn.Linear(wd, c.head_width), nn.ReLU(), nn.Linear(c.head_width, k * self.n_classes)
        )
        self.head_features = nn.Sequential(
            nn.Linear(wd, c.head_width), nn.ReLU(), nn.Linear(c.head_width, k * self.n_features)
        )
        self.head_met = nn.Sequential(
            nn.Linear(wd, c.head_width), nn.ReLU(), nn.Linear(c.head_width, Encoding.met_dim)
        )

    # -- networks ------------------------------------------------------------------------
    @property
    def process_conditional(self) -> bool:
        """True: the decoder takes the process label (or there is one process)."""
        return self.n_labels > 0 or len(self.processes) == 1

    @property
    def lead_observable(self) -> str | None:
        return None if self.config.lead == "none" else self.config.lead

    def lead_log10(self, raw: RawBatch) -> torch.Tensor:
        """log10 of the leading observable (MET or HT, GeV, floored at 1e-3) [B], float64."""
        if self.config.lead == "met":
            value = raw.met.double()
        else:
            jets = (raw.types == 1) | (raw.types == 2)
            value = torch.where(jets, raw.p4[..., 1].double(), 0.0).sum(dim=1)
        return value.clamp_min(1e-3).log10()

    def _lead_input(self, log10: torch.Tensor | None, b: int, like: torch.Tensor) -> list[torch.Tensor]:
        """``[standardised lead [B, 1]]`` (None: the mean), or ``[]`` without lead input."""
        if not self.n_lead:
            return []
        if log10 is None:
            return [like.new_zeros(b, 1)]
        mean, std = self.lead_scale
        return [((log10.to(like.device).double() - mean) / std).to(like.dtype)[:, None]]

    def _draw_lead(self, n: int, process: int, lead_range: tuple[float, float] | None,
                   generator: torch.Generator | None) -> torch.Tensor:
        """log10 lead values [n] by inverse-CDF sampling of ``process``'s quantiles, truncated
        to ``lead_range`` (GeV); ConfigError when the range holds no training events."""
        q = self.lead_quantiles[process]
        grid = torch.linspace(0, 1, q.numel(), dtype=torch.float64, device=q.device)
        lo_u, hi_u = 0.0, 1.0
        if lead_range is not None:
            lo, hi = (math.log10(max(v, 1e-3)) if math.isfinite(v) else v for v in lead_range)
            lo_u, hi_u = (float(_interp(torch.tensor([v], dtype=torch.float64, device=q.device), q, grid))
                          for v in (lo, hi))
            if hi_u - lo_u < 1.0 / (q.numel() - 1) / 100:
                raise ConfigError(
                    f"no training events of {self.processes[process]} have {self.config.lead} in "
                    f"{lead_range} GeV: the model cannot be asked for this region"
                )
        u = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        return _interp(lo_u + (hi_u - lo_u) * u.to(q.device), grid, q)

    @property
    def param_conditional(self) -> bool:
        """True: the label carries physical parameters (points of a family, see module doc)."""
        return self.n_labels > 0 and self.space.has_params

    def _labels(self, process: torch.Tensor | None, b: int, like: torch.Tensor,
                label: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``[labels [B, label_dim]]`` of process codes [B] (None: process 0) or of one given
        ``label`` [label_dim]; ``[]`` without label input."""
        if not self.n_labels:
            return []
        if label is not None:
            return [label.to(like.device, like.dtype).expand(b, -1)]
        if process is None:
            process = torch.zeros(b, dtype=torch.long, device=like.device)
        return [self.label_table.to(like.device, like.dtype)[process.to(like.device).long()]]

    def encode(
        self, raw: RawBatch, *, process: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latent mean [B, latent] and log-variance [B, latent] (None for alpha) of events.

        ``process`` (long [B], codes into :attr:`processes`) overrides ``raw.process`` as the
        label input (models with ``n_labels > 0`` only).
        """
        enc = self.encoding.encode(raw)
        b = len(enc)
        dt = self.mean_head.weight.dtype
        h = torch.cat(
            [
                self.branch_types(enc.one_hot(dt).reshape(b, -1)),
                self.branch_features(enc.features.to(dt).reshape(b, -1)),
                self.branch_met(enc.met.to(dt)),
                *self._labels(raw.process if process is None else process, b, self.mean_head.weight),
                *self._lead_input(self.lead_log10(raw) if self.n_lead else None, b,
                                  self.mean_head.weight),
            ],
            dim=1,
        )
        h = self.pre_latent(self.trunk(h))
        mu = self.mean_head(h)
        logvar = self.logvar_head(h) if self.logvar_head is not None else None
        return mu, logvar

    def decode_tensors(
        self, z: torch.Tensor, process: torch.Tensor | None = None,
        label: torch.Tensor | None = None, lead: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The bare decoder: type logits [B, K, 8], features [B, K, 4], MET [B, 2].

        ``process``: long [B] process codes of the label input (None: process 0); ``label``
        [label_dim]: one label for every event instead (a parameter point); ``lead``: log10 of
        the leading observable [B] (models with ``lead``; None: its mean).
        """
        b, k = z.shape[0], self.config.max_objects
        labels = self._labels(process, b, z, label) + self._lead_input(lead, b, z)
        h = self.decoder(torch.cat([z, *labels], dim=1) if labels else z)
        logits = self.head_types(h).reshape(b, k, self.n_classes)
        feats = self.head_features(h).reshape(b, k, self.n_features)
        return logits, feats, self.head_met(h)

    def decode(
        self, z: torch.Tensor, *, process: int = 0, generator: torch.Generator | None = None,
        label: torch.Tensor | None = None, lead: torch.Tensor | None = None,
    ) -> RawBatch:
        """Latent codes [B, latent] -> events (RawBatch, GeV) through the encoding's inverse.

        ``label`` [label_dim] replaces the label of ``process`` (a parameter point); ``lead``
        [B]: log10 of the leading observable (models with ``lead``).
        """
        codes = torch.full((z.shape[0],), process, dtype=torch.long, device=z.device)
        logits, feats, met = self.decode_tensors(z, codes, label, lead)
        return self.encoding.decode(
            types=logits,
            features=feats,
            met=met,
            sample_types=self.config.sample_types,
            generator=generator,
            process=codes,
        )

    def noisy_latent(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The variator: z = mu + noise (see the module docstring)."""
        raise NotImplementedError

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        """KL(q(z|x) || N(0, 1)), summed over latent dimensions, mean over events."""
        if logvar is None:
            return mu.new_zeros(())
        return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()

    @property
    def kl_weight(self) -> float:
        return 0.0

    # -- GenerativeModel -----------------------------------------------------------------
    def training_loss(
        self, raw: RawBatch, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        enc = self.encoding.encode(raw)
        mu, logvar = self.encode(raw)
        z = self.noisy_latent(mu, logvar, generator)
        logits, feats, met = self.decode_tensors(
            z, raw.process, lead=self.lead_log10(raw) if self.n_lead else None
        )
        dt = feats.dtype
        ce = nn.functional.cross_entropy(logits.reshape(-1, self.n_classes), enc.types.reshape(-1))
        mse_f = nn.functional.mse_loss(feats, enc.features.to(dt))
        mse_m = nn.functional.mse_loss(met, enc.met.to(dt))
        kl = self.kl(mu, logvar)
        loss = ce + mse_f + mse_m + self.kl_weight * kl
        parts = {
            "ce_types": float(ce.detach()),
            "mse_features": float(mse_f.detach()),
            "mse_met": float(mse_m.detach()),
        }
        if logvar is not None:
            parts["kl"] = float(kl.detach())
        return loss, parts

    def fit_data(self, raw: RawBatch) -> None:
        """Fit the encoding's standardisation (only with ``standardize=True``) and, with
        ``lead``, the per-process quantiles and the scale of the leading observable."""
        self.encoding.fit(raw)
        if not self.n_lead:
            return
        x = self.lead_log10(raw).cpu()
        grid = torch.linspace(0, 1, _N_QUANTILES, dtype=torch.float64)
        self.lead_scale.copy_(torch.stack([x.mean(), x.std().clamp_min(1e-3)]))
        for p in range(len(self.processes)):
            own = x[raw.process.cpu() == p]
            self.lead_quantiles[p] = torch.quantile(own if len(own) else x, grid)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {f"encoding.{k}": v for k, v in self.encoding.state_dict().items()}

    def load_extra_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("encoding.")}
        self.encoding.load_state_dict(state)

    @torch.no_grad()
    def latent_prior_sample(
        self,
        n: int,
        *,
        prior: str,
        process: str | None,
        generator: torch.Generator | None,
        truth: RawBatch | None,
    ) -> torch.Tensor:
        """Latent codes [n, latent] from ``prior`` (on the model's device)."""
        device = self.device
        latent = self.config.latent_dim
        if prior == "normal":
            return torch.randn(n, latent, generator=generator, device=device)
        if prior in ("bgmm", "gmm"):
            name = self.processes[self.process_index(process)]
            fitted = self.priors.get((prior, name))
            if fitted is None:
                raise ValueError(
                    f"no {prior!r} prior fitted for process {name!r}; run "
                    f"`fastmc fit-prior MODEL_DIR --prior {prior}` first"
                )
            return fitted.sample(n, generator=generator).to(device)
        if prior == "truth":
            if truth is None:
                raise ValueError(
                    "the 'truth' prior encodes given events and adds noise: pass input events "
                    "(--truth-events FILE on the command line)"
                )
            if len(truth) != n:
                raise ValueError(f"the truth prior needs n = len(truth) events, got {n} != {len(truth)}")
            codes = torch.full((n,), self.process_index(process), dtype=torch.long, device=device)
            mu, logvar = self.encode(truth.to(device), process=codes)
            return self.noisy_latent(mu, logvar, generator)
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(self.prior_kinds)}")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        condition: Condition | None = None,
        generator: torch.Generator | None = None,
        prior: str = "normal",
        truth: RawBatch | None = None,
    ) -> RawBatch:
        """``n`` events (RawBatch on the model's device, GeV) decoded from latent ``prior``.

        ``prior``: one of :attr:`prior_kinds` (bgmm/gmm: fitted for the condition's process);
        ``truth``: the ``n`` input events of the ``"truth"`` prior.
        """
        process = None if condition is None else condition.process
        label = None
        if condition is not None and condition.params is not None:
            process, label = self._point(condition)
        was_training = self.training
        self.eval()
        try:
            z = self.latent_prior_sample(
                n, prior=prior, process=process, generator=generator, truth=truth
            )
            lead = None
            if self.n_lead:
                lead = (self.lead_log10(truth.to(self.device)) if truth is not None else
                        self._draw_lead(n, self.process_index(process),
                                        None if condition is None else condition.lead_range,
                                        generator))
            return self.decode(z, process=self.process_index(process), generator=generator,
                               label=label, lead=lead)
        finally:
            self.train(was_training)

    def _point(self, condition: Condition) -> tuple[str, torch.Tensor]:
        """A parameter point's nearest trained process (for latent priors and the output's
        process code) and its label [label_dim]; the range check is the caller's
        (:meth:`fastmc.points.ProcessSpace.resolve`)."""
        if not self.param_conditional:
            raise ConfigError(f"model {self.name!r} is not conditioned on physical parameters")
        family, params = condition.process, dict(condition.params or {})
        same = self.space.points_of(family)
        row = torch.tensor(self.space.label_row(family, params), dtype=torch.float32)
        nearest = min(same, key=lambda i: float((self.label_table[i].cpu() - row).abs().sum()))
        return self.processes[nearest], row

    @staticmethod
    def prior_from_state(description: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Any:
        """A latent prior from its saved description and tensors."""
        from fastmc.models.vae.priors import prior_from_state

        return prior_from_state(description, tensors)

    def core_runner(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Callable[[], int]:
        """The bare decoder on fixed latent codes [batch_size, latent] (for fastmc bench)."""
        self.eval()
        z = torch.randn(
            batch_size, self.config.latent_dim, device=device,
            generator=torch.Generator(device=device).manual_seed(0),
        )  # fmt: skip

        def run() -> int:
            with torch.no_grad():
                self.decode_tensors(z)
            return batch_size

        return run

    @torch.no_grad()
    def latent_codes(
        self,
        batches: Iterable[RawBatch],
        *,
        process: str | None = None,
        max_events: int = 200_000,
        codes: str = "posterior",
        seed: int = 0,
    ) -> torch.Tensor:
        """Latent codes [N, latent] of up to ``max_events`` events of ``process``.

        ``codes="posterior"`` (default): z drawn from the variator, z = mu + noise (beta: the
        posterior's sigma, alpha: alpha), i.e. the aggregate posterior the decoder was trained
        on; ``codes="mean"``: the encoder means mu alone.  Decoding mu alone gives events
        unlike the training sample when the posterior is wide (the decoder is nonlinear), so
        mixture priors are fitted on posterior draws by default.
        """
        if codes not in ("posterior", "mean"):
            raise ValueError(f"codes must be 'posterior' or 'mean', got {codes!r}")
        gen = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        idx = self.process_index(process)
        out, have = [], 0
        try:
            for raw in batches:
                raw = raw.to(self.device)
                keep = raw.process == idx if len(self.processes) > 1 else None
                if keep is not None:
                    raw = RawBatch(**{f.name: getattr(raw, f.name)[keep] for f in dataclasses.fields(raw)})
                if not len(raw):
                    continue
                mu, logvar = self.encode(raw)
                z = mu if codes == "mean" else self.noisy_latent(mu, logvar, gen)
                out.append(z[: max_events - have])
                have += out[-1].shape[0]
                if have >= max_events:
                    break
        finally:
            self.train(was_training)
        if not out:
            raise ValueError(f"no events of process {self.processes[idx]!r} to fit a prior on")
        return torch.cat(out)

    def fit_prior(
        self,
        kind: str,
        batches: Iterable[RawBatch],
        *,
        process: str | None = None,
        components: int = 100,
        max_events: int = 200_000,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Fit a ``"bgmm"`` or ``"gmm"`` prior on latent codes of ``process`` events.

        ``options`` go to :func:`fastmc.models.vae.prior_fit.fit_bgmm` / :func:`fit_gmm`
        (``max_iter``, ``tol``, ``reg_covar``, ...), except ``codes`` ("posterior" or "mean",
        see :meth:`latent_codes`).  Returns the fit report.
        """
        from fastmc.models.vae import prior_fit

        if kind not in ("bgmm", "gmm"):
            raise ValueError(f"prior {kind!r} has nothing to fit; fit 'bgmm' or 'gmm'")
        name = self.processes[self.process_index(process)]
        codes = options.pop("codes", "posterior")
        z = self.latent_codes(batches, process=name, max_events=max_events, codes=codes, seed=seed)
        if kind == "bgmm":
            fitted = prior_fit.fit_bgmm(z, components=components, seed=seed, progress=progress, **options)
        else:
            fitted = prior_fit.fit_gmm(
                z, components=components, seed=seed, progress=progress, device=z.device, **options
            )
        fitted.report["process"] = name
        fitted.report["codes"] = codes
        self.priors[(kind, name)] = fitted.to("cpu")
        return fitted.report


class BetaVAE(VAE):
    """beta-VAE: z = mu + eps exp(logvar / 2); loss + beta KL."""

    name = "beta-vae"
    has_logvar = True

    def noisy_latent(self, mu, logvar, generator):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    @property
    def kl_weight(self) -> float:
        return float(self.config.beta)


class AlphaVAE(VAE):
    """alpha-VAE: z = mu + alpha eps, no KL term."""

    name = "alpha-vae"
    has_logvar = False

    def noisy_latent(self, mu, logvar, generator):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + float(self.config.alpha) * eps


register_model("beta-vae", BetaVAEConfig, BetaVAE)
register_model("alpha-vae", AlphaVAEConfig, AlphaVAE)
