"""Model studies: a grid of generators and priors, trained and evaluated against held-out events.

A study runs, per process: simulate (or take the user's files) -> ``prepare`` (train/val/test
store) -> ``train`` every model of the grid -> fit every prior -> ``generate`` -> ``evaluate``
against the store's **test** split (never seen in training), and writes one ranking.  Every
stage reuses what an earlier run left in the output folder unless ``fresh=True``, so a study
that was interrupted resumes where it stopped.

The YAML file maps onto :class:`StudyConfig`::

    name: theses-grid
    output: study-output
    processes:
      - {name: ttbar, simulate: {process: ttbar, events: 100000, seed: 1}}
      - {name: sqsq, files: [../shared/data/darkmachines/sqsq1_sq1400_neut800_chan1.csv]}
    split: {val: 0.1, test: 0.3, seed: 0}
    train: {epochs: 30, batch_size: 1000, batches_per_epoch: 100}   # fastmc.workflows.train_config.TrainConfig
    models:
      - {model: beta-vae, grid: {beta: [0, 0.001, 0.01]}}
      - {model: alpha-vae, grid: {alpha: [0.2]}, config: {latent: 80}}
      - {model: flow, config: {mode: coupling}, train: {lr_schedule: cosine}}  # over train:
    priors:
      - {kind: normal}
      - {kind: gmm, components: [10, 50]}
      - {kind: truth}
    generate: {events: 50000, batch_size: 10000, seed: 0}
    evaluate: {max_events: 100000, seed: 0, include_mc: true}

A prior applies to the models that support it (``LatentVariableMixin.prior_kinds``; other models: normal); ``truth``
encodes training events and adds noise (the theses' alpha-VAE mode; it needs ground truth).
``include_mc`` adds the store's validation split as a sample "MC (val split)": an independent
Monte Carlo sample, the best a generator can do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fastmc.config import check_config, from_dict
from fastmc.errors import ConfigError
from fastmc.workflows.study_summary import StudyResult, summary_markdown, write_summary

__all__ = [
    "ModelRun",
    "StudyConfig",
    "StudyResult",
    "expand_runs",
    "load_study_config",
    "run_study",
    "summary_markdown",
]

#: progress(description, total) -> context manager yielding advance(n); the CLI passes rich bars
ProgressFactory = Callable[[str, float | None], contextlib.AbstractContextManager[Callable[[float], None]]]


@contextlib.contextmanager
def _no_progress(description: str, total: float | None) -> Iterator[Callable[[float], None]]:
    yield lambda n: None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A study (see the module docstring for the YAML form).

    ``processes``: list of ``{name, simulate: {process, events, seed, jobs, channel, params}}``
    or ``{name, files: [...]}``; ``split``: store fractions; ``train``: TrainConfig fields;
    ``models``: list of ``{model, grid: {param: [values]}, config: {fixed params}, label,
    train: {TrainConfig fields of this entry's models only, over the study's train}}``;
    ``priors``: list of ``{kind, components: [..]}``; ``generate``: events, batch_size, seed;
    ``evaluate``: max_events, seed, include_mc, classifier, plots.
    """

    name: str = "study"
    output: str = "study-output"
    processes: tuple[dict[str, Any], ...] = ()
    split: dict[str, Any] = dataclasses.field(default_factory=lambda: {"val": 0.1, "test": 0.3})
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    models: tuple[dict[str, Any], ...] = ()
    priors: tuple[dict[str, Any], ...] = ({"kind": "normal"},)
    generate: dict[str, Any] = dataclasses.field(default_factory=dict)
    evaluate: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "processes", tuple(self.processes))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "priors", tuple(self.priors))
        check_config(self)
        if not self.processes:
            raise ConfigError("a study needs at least one entry under 'processes'")
        if not self.models:
            raise ConfigError("a study needs at least one entry under 'models'")
        names = [p.get("name") for p in self.processes]
        for p in self.processes:
            if not isinstance(p, Mapping) or not p.get("name"):
                raise ConfigError(f"each process needs a 'name', got {p!r}")
            if ("simulate" in p) == ("files" in p):
                raise ConfigError(f"process {p['name']!r}: give exactly one of 'simulate' or 'files'")
        if len(set(names)) != len(names):
            raise ConfigError(f"process names must be unique, got {names}")
        for m in self.models:
            if not isinstance(m, Mapping) or "model" not in m:
                raise ConfigError(f"each model entry needs 'model', got {m!r}")
        for pr in self.priors:
            if not isinstance(pr, Mapping) or "kind" not in pr:
                raise ConfigError(f"each prior entry needs 'kind', got {pr!r}")
        from fastmc.workflows.train_config import TrainConfig

        from_dict(TrainConfig, self.train, source="train")  # validates the training section early
        for m in self.models:
            if not isinstance(m.get("train") or {}, Mapping):
                raise ConfigError(f"model entry {m['model']!r}: 'train' must be a mapping")
            from_dict(TrainConfig, {**self.train, **(m.get("train") or {})},
                      source=f"models[{m.get('label') or m['model']}].train")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def load_study_config(path: str | os.PathLike[str]) -> StudyConfig:
    """Read a study YAML file; relative file paths in it are taken from the file's folder."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - {f.name for f in dataclasses.fields(StudyConfig)}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    for proc in data.get("processes", []):
        if isinstance(proc, dict) and "files" in proc:
            proc["files"] = [str(path.parent / f) if not os.path.isabs(f) else f for f in proc["files"]]
    return from_dict(StudyConfig, data, source=str(path))


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """One trained model of the grid: ``label`` (folder name), registry ``model``, its config,
    and its entry's training settings over the study's (``train``)."""

    label: str
    model: str
    config: dict[str, Any]
    train: dict[str, Any] = dataclasses.field(default_factory=dict)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def expand_runs(config: StudyConfig) -> list[ModelRun]:
    """The cartesian product of every model entry's ``grid`` (labels like ``beta-vae_beta=0.01``)."""
    runs: list[ModelRun] = []
    for entry in config.models:
        grid = dict(entry.get("grid") or {})
        fixed = dict(entry.get("config") or {})
        keys = list(grid)
        for values in itertools.product(*(list(grid[k]) for k in keys)) if keys else [()]:
            params = dict(zip(keys, values, strict=True))
            label = entry.get("label") or entry["model"]
            if params:
                label += "_" + "_".join(f"{k}={_fmt(v)}" for k, v in params.items())
            runs.append(ModelRun(label=label, model=entry["model"], config={**fixed, **params},
                                 train=dict(entry.get("train") or {})))
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"model labels must be unique; give entries a 'label': {labels}")
    return runs


def _prior_variants(config: StudyConfig, kinds: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
    """(label, kind, components) for every prior entry the model supports."""
    out = []
    for entry in config.priors:
        kind = entry["kind"]
        if kind not in kinds:
            continue
        comps = entry.get("components")
        if kind in ("gmm", "bgmm"):
            for c in comps if isinstance(comps, list | tuple) else [comps or 20]:
                out.append((f"{kind}{int(c)}", kind, int(c)))
        else:
            out.append((kind, kind, None))
    return out


def _log_default(msg: str) -> None:  # the library never prints; the CLI passes a logger
    pass


def _data_files(config: StudyConfig, proc: dict[str, Any], out: Path, fresh: bool,
                progress: ProgressFactory, log: Callable[[str], None]) -> list[str]:
    if "files" in proc:
        return [str(f) for f in proc["files"]]
    from fastmc.simulate import simulate_to_file

    sim = dict(proc["simulate"])
    target = out / "data" / f"{proc['name']}.parquet"
    if target.exists() and not fresh:
        log(f"reusing simulated events {target}")
        return [str(target)]
    n = int(sim.pop("events", 20_000))
    process = sim.pop("process", proc["name"])
    sim.setdefault("jobs", os.cpu_count() or 1)
    sim.setdefault("seed", 1)
    log(f"simulating {n:,} {process} events with Pythia 8 ({sim['jobs']} jobs)")
    with progress(f"simulate {process}", n) as advance:
        simulate_to_file(target, process, n, progress=advance, **sim)
    return [str(target)]


def _store(config: StudyConfig, name: str, files: list[str], out: Path, fresh: bool,
           progress: ProgressFactory, log: Callable[[str], None]) -> Path:
    from fastmc.data.store import open_store, prepare
    from fastmc.errors import FastMCError

    target = out / "stores" / name
    if target.exists() and not fresh:
        try:
            open_store(target)
            log(f"reusing event store {target}")
            return target
        except FastMCError as exc:
            log(f"re-preparing {target}: {exc}")
    split = {"val": 0.1, "test": 0.3, "seed": 0, **config.split}
    with progress(f"prepare {name}", None) as advance:
        prepare(files, target, val=split["val"], test=split["test"], seed=split["seed"],
                overwrite=True, progress=advance)
    return target


def _train(config: StudyConfig, run: ModelRun, store: Path, model_dir: Path, fresh: bool,
           progress: ProgressFactory, log: Callable[[str], None]) -> float:
    """Train (or reuse) one model; returns the training time in seconds."""
    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    done = model_dir / "study_done.json"
    if done.exists() and not fresh:
        log(f"reusing trained model {model_dir}")
        return float(json.loads(done.read_text()).get("seconds", float("nan")))
    tc = from_dict(TrainConfig, {**config.train, **run.train}, source="train")
    total = tc.epochs * tc.batches_per_epoch
    with progress(f"train {run.label}", total) as advance:
        res = train_from_store(store, model_dir, model_name=run.model, model_config=run.config,
                               config=tc, progress=advance)
    done.write_text(json.dumps({"seconds": res.seconds, "best_epoch": res.best_epoch,
                                "best_val_loss": res.best_val_loss, "stopped": res.stopped}))
    return res.seconds


def _truth_file(store_path: Path, fresh: bool) -> Path:
    """The train split of the store as a Parquet file (input of the 'truth' prior)."""
    from fastmc.data.store import open_store
    from fastmc.io import write_events

    path = store_path / "truth_train.parquet"
    if fresh or not path.exists():
        write_events(path, open_store(store_path).events("train"))
    return path


def _generate_all(config: StudyConfig, run: ModelRun, proc_name: str | None, store: Path,
                  model_dir: Path, gen_dir: Path, fresh: bool, progress: ProgressFactory,
                  log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Fit each prior of the grid and generate a sample with it; one dict per sample.

    ``proc_name`` None (a store of several processes): the training mixture, priors fitted for
    every process, and no truth-prior sample (it encodes events of one process)."""
    from fastmc.data.store import open_store
    from fastmc.models.base import is_latent
    from fastmc.models.modeldir import load_model
    from fastmc.workflows.generate import generate
    from fastmc.workflows.priors import fit_prior

    gcfg = {"events": 50_000, "batch_size": 10_000, "seed": 0, **config.generate}
    model = load_model(model_dir, device="cpu")
    samples = []
    kinds = model.prior_kinds if is_latent(model) else ("normal",)
    for label, kind, comps in _prior_variants(config, kinds):
        out = gen_dir / f"{run.label}__{label}.parquet"
        info_path = out.with_suffix(".json")
        if out.exists() and info_path.exists() and not fresh:
            samples.append(json.loads(info_path.read_text()))
            continue
        t_fit = 0.0
        if comps is not None:
            st = open_store(store)
            t0 = time.perf_counter()
            for fit_proc in [proc_name] if proc_name else list(model.processes):
                with progress(f"fit {label} prior ({run.label}, {fit_proc})", 500) as advance:
                    fit_prior(model, st, kind, process=fit_proc, components=comps, seed=0,
                              progress=advance)
            t_fit = time.perf_counter() - t0
        if kind == "truth" and proc_name is None:
            log(f"{run.label}: no truth-prior sample for a store of several processes")
            continue
        truth = _truth_file(store, fresh) if kind == "truth" else None
        with progress(f"generate {run.label} / {label}", gcfg["events"]) as advance:
            rep = generate(model, out, gcfg["events"], prior=kind, process=proc_name,
                           batch_size=gcfg["batch_size"], seed=gcfg["seed"], device="cpu",
                           truth_events=truth, progress=advance)
        info = {"process": proc_name, "model": run.label, "prior": label, "path": str(out),
                "events_per_s": rep.events_per_s, "prior_fit_s": t_fit,
                "model_rejected_share": rep.model_rejected_share}
        info_path.write_text(json.dumps(info))
        samples.append(info)
    return samples


def run_study(
    config: StudyConfig,
    *,
    fresh: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run every stage of the study (see module docstring); returns the ranking rows.

    Output folder layout: ``data/`` (simulated events), ``stores/<process>``,
    ``models/<process>/<label>``, ``generated/<process>/<label>__<prior>.parquet``,
    ``report/`` (one process: its evaluation report; several: ``report/<process>/`` and a
    combined ``report/index.html``), ``study.json`` and ``summary.md`` (the ranking).
    """
    from fastmc.data.store import open_store
    from fastmc.evaluate.floors import FloorConfig
    from fastmc.evaluate.report import evaluate, evaluation_steps
    from fastmc.io import read_events

    progress = progress or _no_progress
    log = log or _log_default
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    runs = expand_runs(config)
    ecfg = {"max_events": 100_000, "seed": 0, "include_mc": True, "classifier": True,
            "plots": True, **config.evaluate}
    rows: list[dict[str, Any]] = []
    reports: dict[str, Path] = {}
    for proc in config.processes:
        name = proc["name"]
        files = _data_files(config, proc, out, fresh, progress, log)
        store_path = _store(config, name, files, out, fresh, progress, log)
        store = open_store(store_path)
        proc_names = store.processes
        # the models are trained on the whole store; with several processes they generate the
        # training mixture (per-process labels), compared with the whole test split
        proc_name = proc_names[0] if len(proc_names) == 1 else None
        samples: list[dict[str, Any]] = []
        train_s: dict[str, float] = {}
        for run in runs:
            model_dir = out / "models" / name / run.label
            train_s[run.label] = _train(config, run, store_path, model_dir, fresh, progress, log)
            samples += _generate_all(config, run, proc_name, store_path, model_dir,
                                     out / "generated" / name, fresh, progress, log)
        reference = store.events("test")
        generated = {f"{s['model']} / {s['prior']}": read_events(s["path"]) for s in samples}
        if ecfg["include_mc"]:
            generated["MC (val split)"] = store.events("val")
        report_dir = out / "report" if len(config.processes) == 1 else out / "report" / name
        floor_cfg = FloorConfig(repeats=int(ecfg.get("repeats", 10)))
        steps = evaluation_steps(len(generated), repeats=floor_cfg.repeats,
                                 classifier=ecfg["classifier"], plots=ecfg["plots"])
        with progress(f"evaluate {name}", steps) as advance:
            rep = evaluate(reference, generated, out_dir=report_dir, seed=ecfg["seed"],
                           max_events=ecfg["max_events"], classifier=ecfg["classifier"],
                           plots=ecfg["plots"], config=floor_cfg, reference_label=f"{name} MC (test split)",
                           progress=advance, reconstruction=tuple(
                               f"{s['model']} / {s['prior']}" for s in samples if s["prior"] == "truth"))
        reports[name] = report_dir / "index.html"
        speed = {f"{s['model']} / {s['prior']}": s for s in samples}
        for row in rep.summary:
            s = speed.get(row.label, {})
            rows.append({"process": name, **row.as_dict(), "events_per_s": s.get("events_per_s"),
                         "train_s": train_s.get(s.get("model", ""), None),
                         "n_reference": len(reference)})
    result = StudyResult(rows=rows, reports=reports, output=out)
    write_summary(result, name=config.name, config=config.to_dict())
    return result
