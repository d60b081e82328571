"""Classifier refinement of a trained generator: learned rejection of whole events.

A classifier is trained to tell the model's training events (class 0) from events the model
generates (class 1) on the whole-event features of the evaluation
(:func:`fastmc.evaluate.features.whole_event_features`: every object, jet pair and triplet).
Its odds estimate the density ratio ``w(x) = p_train(x) / p_model(x)`` (arXiv:2305.16774;
the DCTR reweighting of generative models, arXiv:2009.03796).  At generation every drawn
event is kept with probability ``min(w / cap, 1)``, so the kept events follow
``p_model x min(w, cap)``, which is ``p_train`` wherever ``w <= cap``.  The cap is the
``cap_quantile`` quantile of ``w`` on generated events held out of the fit; the share of
drawn events above it (the part where the correction is clipped) and the share kept are
measured at the fit and counted again in every generation run (output metadata
``refinement``).  Nothing in an event is changed: whole events are kept or dropped.

The classifier is scikit-learn's ``HistGradientBoostingClassifier`` (early stopping on
``validation_fraction`` of the fit events; only the trees up to the best validation score are
kept, so that on events the model already reproduces it keeps none: w = 1), fitted in
``stages`` (default 2): each further stage learns the training events against fresh
generated events weighted by the earlier stages' weights, the residual that a single
classifier leaves (session 11: refined ttbar HT 1.5% low with one stage, 0.7% with two), and
the stages' logits add.  The marginal closure of the weights (chi2 / ndf of every feature's
histogram, :mod:`fastmc.evaluate.closure`) is measured on the held-out generated events.  The
trees of every stage are stored as one ensemble of arrays (:class:`TreeEnsemble`) in the
model directory's ``refiner.safetensors`` with the digest of the weights it was fitted to:
retrained weights make it stale, and generation then refuses it (or, by default, warns and
generates without it).

**Fit it on the model's training events, never on the sample you evaluate against**: the
refinement learns the density of its class-0 events, so fitting it on the reference would
tune the generator to that sample's fluctuations.  The evaluation of a refined generator is
the usual whole-event test against an independent sample.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np

from fastmc import __version__
from fastmc.config import derive_seed
from fastmc.errors import ConfigError, require
from fastmc.evaluate.features import as_presence, sparse_columns, whole_event_features
from fastmc.evaluate.trees import TreeEnsemble, resolve_engine
from fastmc.events import Events

__all__ = ["RefineConfig", "Refiner", "fit_events", "fit_refiner", "load_refiner", "refine_model_dir",
           "save_refiner"]

#: A validation log-loss below this (0.693 = indistinguishable) means the model misses whole
#: regions of the training events: refinement warns.
_SEPARABLE_LOG_LOSS = 0.5
#: |mean of w over held-out generated events - 1| above this: the weights are not calibrated
#: (a density ratio p_train / p_model averages 1 over the model's events): refinement warns.
_MEAN_WEIGHT_TOLERANCE = 0.05
#: Events per thread at least when :meth:`Refiner.weights` splits a batch over threads.
_MIN_PART = 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefineConfig:
    """Settings of :func:`fit_refiner` (keyword-only, validated).

    ``events``: events the model generates per stage of the fit (the training events are
    all used); None: twice the training events, within 20,000-100,000 (the demo flow's 12,001
    training events: 24k; measured on it, 20k: AUC 0.589, 100k: 0.599 with HT 2.4% low, 12k:
    0.610; docs/results.md session 11); ``held_out``: further generated events that set the cap
    and measure the acceptance and the marginal closure (100k: 20k could not tell one stage
    from two, docs/results.md session 11); ``max_iter``: trees at most (early stopping on
    ``validation_fraction`` of the fit events, ``n_iter_no_change`` rounds; the trees up to
    the best validation score are kept);
    ``learning_rate``, ``max_leaf_nodes``: of the trees; ``cap_quantile``: the weight cap is
    this quantile of ``w`` on the held-out generated events (1 - it is the share of drawn
    events whose correction is clipped); ``seed``: generation seeds, subsample and classifier;
    ``prior``: the latent prior the model generates with (a VAE's; the flow: ``"normal"``):
    the refiner corrects that prior's output only; ``stages``: classifiers fitted in turn,
    each on ``events`` freshly generated events weighted by the earlier stages' weights (the
    residual of the correction; one stage alone left refined ttbar samples' HT 1.5% low,
    docs/results.md session 11), their logits added.
    """

    events: int | None = None
    held_out: int = 100_000
    max_iter: int = 300
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    validation_fraction: float = 0.1
    n_iter_no_change: int = 20
    cap_quantile: float = 0.99
    seed: int = 0
    prior: str = "normal"
    stages: int = 2

    def __post_init__(self) -> None:
        if (self.events is not None and self.events < 1000) or self.held_out < 1000:
            raise ConfigError(f"refinement needs >= 1000 generated events for the fit and for the "
                              f"cap, got events={self.events}, held_out={self.held_out}")
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.n_iter_no_change < 1:
            raise ConfigError("max_iter and n_iter_no_change must be >= 1, max_leaf_nodes >= 2")
        if not 0 < self.learning_rate <= 1 or not 0 < self.validation_fraction < 0.5:
            raise ConfigError("learning_rate must be in (0, 1], validation_fraction in (0, 0.5)")
        if not 1 <= self.stages <= 5:
            raise ConfigError(f"stages must be in 1..5, got {self.stages}")
        if not 0.5 <= self.cap_quantile <= 1:
            raise ConfigError(f"cap_quantile must be in [0.5, 1], got {self.cap_quantile}")


@dataclasses.dataclass(frozen=True, eq=False)
class Refiner:
    """A fitted refinement: ``trees`` (logit of "generated" on the whole-event features),
    ``sparse`` bool [D] (features used as presence flags), ``feature_names`` [D], ``cap``
    (weight cap), ``info`` (what the fit measured: acceptance, clipped share, trees,
    validation log-loss, events, seed, the weights' digest), ``engine``: the CPU walker of the
    trees (:data:`fastmc.evaluate.trees.ENGINES`; "auto": ONNX Runtime where it is installed)."""

    trees: TreeEnsemble
    sparse: np.ndarray
    feature_names: tuple[str, ...]
    cap: float
    info: dict[str, Any]
    engine: str = "auto"

    @property
    def tree_engine(self) -> str:
        """The CPU walker ``engine`` stands for here: "onnxruntime" or "numpy"."""
        return resolve_engine(self.engine)

    def walker(self, device: Any = None) -> str:
        """What walks the trees in :meth:`weights` with ``device``: "torch on cuda:0" for a
        CUDA device, else :attr:`tree_engine`."""
        if device is not None and str(device).startswith("cuda"):
            return f"torch on {device}"
        return self.tree_engine

    def features(self, events: Events) -> np.ndarray:
        """The classifier's inputs for ``events``, float64 [N, D]."""
        table = whole_event_features(events)
        if table.names != self.feature_names:
            raise ConfigError("the refiner was fitted on other whole-event features (another "
                              "fastmc version or max_objects): fit it again with `fastmc refine`")
        return as_presence(table.values, self.sparse)

    def weights(self, events: Events, *, threads: int = 1, device: Any = None) -> np.ndarray:
        """w = p_train / p_model of each event, float64 [N] (before the cap).  ``threads`` > 1
        computes parts of the batch in parallel threads (numpy releases the GIL; the same
        values: every event's weight is its own).  ``device``: a CUDA device (torch device
        or name) walks the trees there, after the features on the CPU threads (the same
        weights to rounding); None or any other device: all in numpy on the CPU."""
        if device is not None and str(device).startswith("cuda"):
            return self._weights(np.concatenate(self._parts(self.features, events, threads)), device)
        return np.concatenate(self._parts(lambda part: self._weights(self.features(part)),
                                          events, threads))

    @staticmethod
    def _parts(fn: Callable[[Events], np.ndarray], events: Events, threads: int
               ) -> list[np.ndarray]:
        """``fn`` of consecutive parts of ``events``, one per thread (>= _MIN_PART events each)."""
        n = len(events)
        if threads <= 1 or n < 2 * _MIN_PART:
            return [fn(events)]
        from concurrent.futures import ThreadPoolExecutor

        k = min(threads, n // _MIN_PART)
        cuts = np.linspace(0, n, k + 1).astype(int)
        with ThreadPoolExecutor(k) as pool:
            return list(pool.map(fn, [events[a:b] for a, b in pairwise(cuts)]))

    def feature_weights(self, values: np.ndarray) -> np.ndarray:
        """w of events given as their whole-event feature values float64 [N, D] (the columns of
        ``feature_names``, before the presence flags), float64 [N]."""
        return self._weights(as_presence(values, self.sparse))

    def _weights(self, x: np.ndarray, device: Any = None) -> np.ndarray:
        return np.exp(-np.clip(self.trees.logit(x, device=device, engine=self.engine), -50.0, 50.0))

    def accept(self, events: Events, rng: np.random.Generator, *, threads: int = 1,
               device: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(bool [N]: keep each event with probability min(w / cap, 1), its w float64 [N]);
        ``threads``, ``device``: see :meth:`weights`."""
        w = self.weights(events, threads=threads, device=device)
        return rng.random(len(w)) * self.cap < w, w

    @property
    def mean_weight(self) -> float:
        """The mean of w over generated events at the fit (``mean_weight_generated``): what
        the uncapped factors are divided by."""
        return float(self.info["mean_weight_generated"])

    @property
    def expected_acceptance(self) -> float:
        return float(self.info["acceptance"])


def _generate(model: Any, n: int, seed: int, prior: str) -> Events:
    from fastmc.workflows.generate import generate_events

    return Events.concatenate(list(generate_events(model, n, seed=seed, prior=prior, refiner=None)))


def _warn_fit(log_loss: float, mean_w: float) -> None:
    """Warnings about a fit: samples separated almost perfectly (the model misses regions), or
    weights whose mean over generated events is far from 1 (not a calibrated density ratio)."""
    if log_loss < _SEPARABLE_LOG_LOSS:
        warnings.warn(
            f"the classifier tells the model's events from the training events almost perfectly "
            f"(validation log-loss {log_loss:.3f}; {math.log(2):.3f} = indistinguishable): the "
            "model misses regions of the training events, and rejection cannot add events "
            "where the model puts none; train the model better (or check that the training "
            "events are of the model's process) before refining", UserWarning, stacklevel=3)
    if abs(mean_w - 1.0) > _MEAN_WEIGHT_TOLERANCE:
        warnings.warn(
            f"the refiner's weights are not calibrated: their mean over generated events is "
            f"{mean_w:.3f} (a density ratio averages 1 there); refined samples may then be biased "
            "in marginals the classifier reweights unevenly (measured at a mean of 0.86, with "
            "12k training events: HT 1.5% low, docs/results.md session 11): check the "
            "observables your analysis uses; more training events, more trees (--max-iter) or "
            "another stage (--stages) may help",
            UserWarning, stacklevel=3)


def fit_events(n_training: int) -> int:
    """Generated events per stage by default: twice the training events, within
    20,000-100,000 (far more generated than training events made the demo flow's fit
    overfit its 12,001 training events; docs/results.md session 11)."""
    return int(min(100_000, max(20_000, 2 * n_training)))


def _fit_stage(x: np.ndarray, y: np.ndarray, w: np.ndarray, cfg: RefineConfig, stage: int,
               threads: int | None) -> tuple[TreeEnsemble, float]:
    """One classifier of the refinement on features ``x`` [N, D] (presence flags applied),
    labels ``y`` (0 training, 1 generated) and event weights ``w``: (its trees up to the best
    validation score, that validation log-loss; NaN without a validation split)."""
    ensemble = require("sklearn.ensemble", "stats")
    from fastmc.evaluate.wholeevent import _threads  # at most `threads` OpenMP threads

    clf = ensemble.HistGradientBoostingClassifier(
        max_iter=cfg.max_iter, learning_rate=cfg.learning_rate, max_leaf_nodes=cfg.max_leaf_nodes,
        early_stopping=True, validation_fraction=cfg.validation_fraction,
        n_iter_no_change=cfg.n_iter_no_change,
        random_state=derive_seed(cfg.seed, "refine" if stage == 0 else f"refine-{stage + 1}") % 2**31,
    )
    with _threads(threads):
        clf.fit(x, y, sample_weight=w)
    # early stopping ends n_iter_no_change trees after the best iteration: keep only up to the
    # best (validation_score_[k] = the score after k trees), so that no tree fits noise
    best = int(np.argmax(clf.validation_score_))
    return TreeEnsemble.from_sklearn(clf, n_trees=best), float(-clf.validation_score_[best])


def _stage_data(f_train: np.ndarray, f_gen: np.ndarray, w_gen: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, weights): training events (class 0) and generated ones (class 1) with the total
    weight of each class N / 2 (balanced), the generated ones in proportion to ``w_gen``."""
    x = np.concatenate([f_train, f_gen])
    y = np.concatenate([np.zeros(len(f_train)), np.ones(len(f_gen))])
    w = np.concatenate([np.full(len(f_train), len(x) / (2 * len(f_train))),
                        w_gen * (len(x) / (2 * w_gen.sum()))])
    return x, y, w


def fit_refiner(model: Any, training: Events, *, config: RefineConfig | None = None,
                weights_digest: str | None = None, threads: int | None = None,
                progress: Callable[[str], None] | None = None) -> Refiner:
    """Fit the refinement of ``model`` (a loaded :class:`~fastmc.models.base.GenerativeModel`,
    single process, no parameters) on its ``training`` events (GeV; see the module doc).
    ``weights_digest``: of the weights file it belongs to (stored in ``info``); ``threads``:
    OpenMP threads of the classifier (None: the environment's); ``progress(message)`` is called
    at each stage.  Seeded by ``config.seed``."""
    cfg = config or RefineConfig()
    require("sklearn.ensemble", "stats")
    if len(model.processes) != 1 or getattr(model, "param_conditional", False):
        raise ConfigError(
            f"refinement supports models of one process without parameters; this model has "
            f"processes {list(model.processes)}: refine a model trained on one process"
        )
    if len(training) < 1000:
        raise ConfigError(f"refinement needs >= 1000 training events, got {len(training)}")
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    n_gen = cfg.events or fit_events(len(training))
    f_train = whole_event_features(training)
    refiner, stages = None, []
    for stage in range(cfg.stages):
        say(f"stage {stage + 1}/{cfg.stages}: generating {n_gen:,} events")
        tag = "refine-fit" if stage == 0 else f"refine-fit-{stage + 1}"
        f_gen = whole_event_features(_generate(model, n_gen, derive_seed(cfg.seed, tag), cfg.prior))
        if refiner is None:
            sparse = sparse_columns(np.concatenate([f_train.values, f_gen.values]))
            w_gen = np.ones(len(f_gen))
        else:
            w_gen = refiner.feature_weights(f_gen.values)
        x, y, w = _stage_data(f_train.values, f_gen.values, w_gen)
        say(f"stage {stage + 1}/{cfg.stages}: classifier on {len(f_train):,} training vs "
            f"{len(f_gen):,} generated events")
        trees, log_loss = _fit_stage(as_presence(x, sparse), y, w, cfg, stage, threads)
        stages.append({"trees": trees.n_trees, "validation_log_loss": _finite(log_loss),
                       "generated_events": n_gen})
        trees = trees if refiner is None else TreeEnsemble.concatenate([refiner.trees, trees])
        refiner = Refiner(trees=trees, sparse=sparse, feature_names=f_train.names, cap=math.inf,
                          info={})
    say(f"generating {cfg.held_out:,} held-out events for the cap and the closure")
    held = _generate(model, cfg.held_out, derive_seed(cfg.seed, "refine-held-out"), cfg.prior)
    return _finish(refiner, f_train.values, whole_event_features(held).values, stages, cfg,
                   weights_digest, model.processes[0], t0)


def _closure(refiner: Refiner, f_train: np.ndarray, f_held: np.ndarray, w: np.ndarray
             ) -> dict[str, Any]:
    """Marginal closure (:func:`fastmc.evaluate.closure.marginal_closure`, chi2 / ndf per
    whole-event feature, 1 = as the training events) of the held-out generated events against
    the training events, unweighted (``before``) and weighted by the capped weights ``w`` as
    rejection applies them (``after``); the features used as presence flags left out."""
    from fastmc.evaluate.closure import marginal_closure

    dense = ~refiner.sparse
    names = [n for n, d in zip(refiner.feature_names, dense, strict=True) if d]
    before = marginal_closure(f_train[:, dense], f_held[:, dense], names=names)
    after = marginal_closure(f_train[:, dense], f_held[:, dense], w, names=names)
    return {"before": before.mean, "after": after.mean,
            "worst_after": [[n, round(v, 2)] for n, v in after.worst(5)],
            "worst_before": [[n, round(v, 2)] for n, v in before.worst(5)], "features": len(names)}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _finish(refiner: Refiner, f_train: np.ndarray, f_held: np.ndarray,
            stages: list[dict[str, Any]], cfg: RefineConfig, weights_digest: str | None,
            process: str, t0: float) -> Refiner:
    """The refiner with its cap and its ``info``, from the whole-event features of the
    training events ``f_train`` [N, D] and of the held-out generated events ``f_held`` [M, D]."""
    w_held = refiner.feature_weights(f_held)
    mean_w = float(w_held.mean())
    first = stages[0]["validation_log_loss"]
    _warn_fit(math.log(2) if first is None else first, mean_w)
    cap = float(np.quantile(w_held, cfg.cap_quantile))
    if not math.isfinite(cap) or cap <= 0:
        raise ConfigError(f"the refinement weights are degenerate (cap {cap}); the model and the "
                          "training events may be of different processes")
    info = {
        "method": "classifier rejection (DCTR, arXiv:2009.03796): keep with min(w / cap, 1)",
        "acceptance": float(np.minimum(w_held / cap, 1.0).mean()),
        "clipped_share": float((w_held > cap).mean()),
        "mean_weight_generated": mean_w,
        "cap": cap, "cap_quantile": cfg.cap_quantile,
        "trees": refiner.trees.n_trees, "depth": refiner.trees.depth,
        "validation_log_loss": stages[0]["validation_log_loss"], "stages": stages,
        "closure": _closure(refiner, f_train, f_held, np.minimum(w_held, cap)),
        "training_events": len(f_train),
        "generated_events": sum(st["generated_events"] for st in stages),
        "held_out_events": len(f_held), "process": process, "prior": cfg.prior,
        "config": dataclasses.asdict(cfg), "weights_digest": weights_digest,
        "fastmc_version": __version__, "seconds": round(time.perf_counter() - t0, 1),
    }
    return dataclasses.replace(refiner, cap=cap, info=info)


def save_refiner(model_dir: Any, refiner: Refiner) -> None:
    """Write ``refiner`` into the model directory (``refiner.safetensors``)."""
    from fastmc.models.modeldir import ModelDir

    arrays, scalars = refiner.trees.to_arrays()
    arrays["sparse"] = refiner.sparse.astype(np.uint8)
    ModelDir(model_dir).write_refiner(arrays, {
        "trees": scalars, "feature_names": list(refiner.feature_names), "cap": refiner.cap,
        "info": refiner.info,
    })


def load_refiner(model_dir: Any, *, required: bool = False, prior: str = "normal"
                 ) -> Refiner | None:
    """The model directory's refiner; None when it has none (ConfigError when ``required``).
    A refiner fitted to other weights than the directory's (retrained since), or to the output
    of another latent prior than ``prior``, does not apply: None with a warning, or
    ConfigError when ``required``."""
    from fastmc.models.modeldir import ModelDir

    md = ModelDir(model_dir)
    stored = md.read_refiner()
    if stored is None:
        if required:
            raise ConfigError(f"{model_dir}: has no refiner; fit one with `fastmc refine {model_dir} "
                              "--train TRAINING_EVENTS`")
        return None
    arrays, desc = stored
    info = dict(desc.get("info") or {})
    msg = None
    if info.get("weights_digest") != md.weights_digest():
        msg = (f"{model_dir}: the refiner was fitted to other weights (the model was retrained "
               "since); fit it again with `fastmc refine`")
    elif info.get("prior", "normal") != prior:
        msg = (f"{model_dir}: the refiner was fitted to the output of prior "
               f"{info.get('prior', 'normal')!r}, not {prior!r}; generate with that prior or fit "
               f"it again with `fastmc refine --prior {prior} --overwrite`")
    if msg is not None:
        if required:
            raise ConfigError(msg)
        warnings.warn(msg + "; generating without it", UserWarning, stacklevel=2)
        return None
    try:
        trees = TreeEnsemble.from_arrays(arrays, desc["trees"])
        return Refiner(trees=trees, sparse=np.asarray(arrays["sparse"]).astype(bool),
                       feature_names=tuple(desc["feature_names"]), cap=float(desc["cap"]),
                       info=info)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{model_dir}: refiner.safetensors is incomplete or of another fastmc "
                          f"version ({type(exc).__name__}: {exc}); fit it again with "
                          "`fastmc refine --overwrite`") from None


def _check_provenance(data: dict[str, Any] | None, paths: list[Any]) -> None:
    """Warn when the event files are not the model's training sources (``config.json``'s data
    provenance), or when they are but also hold the store's test split."""
    sources = {s.get("sha256"): s.get("name") for s in (data or {}).get("sources") or []}
    if not sources:
        return
    from fastmc.data._layout import sha256_file  # how the provenance was computed

    given = {sha256_file(p) for p in paths}
    if not given & set(sources):
        warnings.warn(
            f"the training events given are not among the files the model was trained on "
            f"({', '.join(sorted(map(str, sources.values())))}): refine on the model's training "
            "events (pass its event store), never on the sample you evaluate against",
            UserWarning, stacklevel=3)
    elif ((data or {}).get("fractions") or {}).get("test", 0) > 0:
        warnings.warn(
            "these files also hold the events of the store's test split; if you evaluate against "
            "that split, pass the store instead (-t STORE: its training split only)",
            UserWarning, stacklevel=3)


def _training_events(training: Any, data: dict[str, Any] | None) -> Events:
    """Events, an event store's training split, or event files (checked against ``data``)."""
    from fastmc.data.sources import is_store
    from fastmc.io import expand_paths, read_events

    if isinstance(training, Events):
        return training
    paths = [training] if isinstance(training, str | os.PathLike) else list(training)
    if len(paths) == 1 and is_store(paths[0]):
        from fastmc.data.store import open_store

        return open_store(paths[0]).events("train")
    files = expand_paths(paths)
    _check_provenance(data, files)
    # the features see the leading objects only: a wide width reads any file whole
    return read_events(files, max_objects=64)


def refine_model_dir(model_dir: Any, training: Any, *, config: RefineConfig | None = None,
                     threads: int | None = None, overwrite: bool = False,
                     progress: Callable[[str], None] | None = None) -> Refiner:
    """Fit the refinement of the model in ``model_dir`` on the ``training`` events and store it
    there: Events, an event store (its training split: the model's own training events when
    it is the model's store) or files (paths or globs of Dark Machines CSV in MeV, Parquet or
    ROOT in GeV; a warning when they are not the files the model was trained on).  An existing
    refiner is replaced only with ``overwrite`` (ConfigError otherwise)."""
    from fastmc.models.modeldir import ModelDir, load_model

    md = ModelDir(model_dir)
    if md.has_refiner() and not overwrite:
        raise ConfigError(f"{model_dir}: already has a refiner; pass --overwrite to fit a new one")
    model = load_model(model_dir)
    say = progress or (lambda _msg: None)
    say("reading the training events")
    events = _training_events(training, md.read_config().get("data"))
    refiner = fit_refiner(model, events, config=config, weights_digest=md.weights_digest(),
                          threads=threads, progress=progress)
    save_refiner(model_dir, refiner)
    return refiner
