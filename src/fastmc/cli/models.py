"""Commands of the models stage: ``train``, ``fit-prior``, ``generate``, ``bench``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import typer

from fastmc.cli._app import app, console, errors_as_exit, progress_bar
from fastmc.errors import ConfigError

DEVICE_HELP = "auto: CUDA if available, else CPU."
Device = Literal["auto", "cpu", "cuda"]
BUILTIN_MODELS = ("beta-vae", "alpha-vae", "flow")  # named in the help (a test checks)
FlowMode = Literal["autoregressive", "coupling", "matching"]
LrSchedule = Literal["constant", "cosine"]
LatentPrior = Literal["normal", "bgmm", "gmm", "truth"]
FitPrior = Literal["bgmm", "gmm"]
Codes = Literal["posterior", "mean"]
Channel = Literal["chan1", "chan2a", "chan2b", "chan3"]
THREADS_HELP = (
    "CPU threads of torch. Default: 1 per process (measured faster on a shared machine), "
    "or OMP_NUM_THREADS if set. Seeded results repeat at the same thread count."
)


def _threads_option():
    return typer.Option(None, "--threads", min=1, help=THREADS_HELP, show_default=False)


def _set_threads(threads: int | None) -> int:
    """Set torch's threads by the rule of :mod:`fastmc.threads`; say so on a terminal (in logs
    and pipes the command's last line says it, so that an error stays the only line)."""
    import torch

    from fastmc.threads import resolve_threads

    n, why = resolve_threads(threads)
    torch.set_num_threads(n)
    if console.is_terminal:
        console.print(f"torch threads: {n} ({why})", highlight=False)
    return n


def _check_model(value: str | None) -> str | None:
    """``--model`` must name a registered model: a usage error (exit 2) before any work."""
    if value is None:
        return value
    from fastmc.models.base import available_models

    names = available_models()
    if value not in names:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, names))}.")
    return value


def _threads_note(n: int) -> str:
    return f"{n} torch thread{'s' if n != 1 else ''}"


#: shorthand flags of `fastmc train`: flag -> model setting (same path as --set)
SHORTHANDS = {"--beta": "beta", "--alpha": "alpha", "--latent-dim": "latent_dim", "--flow-mode": "mode"}


def _model_settings(spec: Any, data: dict[str, Any], sets: list[str],
                    shorthands: dict[str, Any]) -> dict[str, Any]:
    """Model settings: YAML ``model_config``, then shorthand flags, then ``--set`` entries."""
    from fastmc.config import parse_assignments

    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    settings = dict(data.get("model_config") or {})
    for flag, value in shorthands.items():
        if value is not None:
            if SHORTHANDS[flag] not in fields:
                raise ConfigError(f"{flag} does not apply to model {spec.name!r}")
            settings.update(parse_assignments(spec.config_cls, [f"{SHORTHANDS[flag]}={value}"]))
    model_sets = [s for s in sets if not s.startswith("train.")]
    settings.update(parse_assignments(spec.config_cls, model_sets))
    return settings


def _train_settings(data: dict[str, Any], sets: list[str], flags: dict[str, Any]) -> dict:
    """The training settings asked for: the YAML ``train`` section, ``--set train.KEY=VALUE``
    and the flags given (a dict: with ``--resume`` each is checked against the stored run)."""
    from fastmc.config import parse_assignments
    from fastmc.workflows.train_config import TrainConfig

    settings = dict(data.get("train") or {})
    train_sets = [s[len("train."):] for s in sets if s.startswith("train.")]
    settings.update(parse_assignments(TrainConfig, train_sets))
    settings.update({k: v for k, v in flags.items() if v is not None})
    return settings


_STOPPED = {"epochs": "reached --epochs", "early_stopping": "early stopping: --patience epochs "
            "without a better val loss", "time": "reached --max-minutes"}


@app.command("train")
def train_cmd(
    store: Path = typer.Argument(..., help="Event store made by `fastmc prepare`."),
    output: Path = typer.Option(..., "-o", "--output", help="Model directory to write."),
    model: str | None = typer.Option(
        None, "--model", metavar="MODEL", callback=_check_model,
        help="Generator: beta-vae, alpha-vae, flow (or another registered model). "
        "[default: beta-vae]", show_default=False,
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Model setting KEY=VALUE, typed by the model's config (repeatable), e.g. "
        "--set latent_dim=40 or --set decoder_widths=256,256; train.KEY=VALUE sets a "
        "training setting, e.g. --set train.lr=0.0005.",
    ),
    beta: float | None = typer.Option(None, "--beta", help="Shorthand of --set beta=X (beta-VAE KL weight, default 0.001)."),
    alpha: float | None = typer.Option(
        None, "--alpha", help="Shorthand of --set alpha=X (alpha-VAE latent noise std, default 0.2)."
    ),
    latent_dim: int | None = typer.Option(None, "--latent-dim", help="Shorthand of --set latent_dim=N (VAE latent size, default 80)."),
    flow_mode: FlowMode | None = typer.Option(
        None,
        "--flow-mode",
        help="Shorthand of --set mode=M for the flow: autoregressive (best fidelity), coupling "
        "(fast generation) or matching (flow matching, transformer over objects) (default "
        "autoregressive).",
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Maximum epochs; an epoch is "
                                      "--batches-per-epoch batches, not a pass over the data "
                                      "(default 50)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Events per batch (default 1000; theses 10000)."
    ),
    batches_per_epoch: int | None = typer.Option(
        None, "--batches-per-epoch", help="Batches per epoch (default 100; theses 1000)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 0.001)."),
    lr_schedule: LrSchedule | None = typer.Option(
        None, "--lr-schedule", metavar="NAME", help="constant, or cosine: the rate falls from --lr to 0 over "
        "--epochs (default constant; the flow trains better with cosine, docs/results.md)."
    ),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", metavar="WD", help="Decoupled weight decay (AdamW; e.g. 0.01) "
        "against overfitting small training sets (default 0: Adam)."
    ),
    ema: float | None = typer.Option(
        None, "--ema", metavar="DECAY", help="Decay of a moving average of the weights "
        "(e.g. 0.999): validated and saved instead of the last weights (default 0: off)."
    ),
    patience: int | None = typer.Option(
        None, "--patience", help="Early stopping: epochs without a better val loss (default 10; 0 off)."
    ),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Stop after the epoch that passes this wall time (minutes)."
    ),
    device: Device | None = typer.Option(None, "--device", help=DEVICE_HELP + " (default auto)"),
    threads: int | None = _threads_option(),
    seed: int | None = typer.Option(None, "--seed", help="Seed of weights, batches, noise (default 0)."),
    process: str | None = typer.Option(
        None, "--process", help="Train on this process of the store only (default: all)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML file with keys model, model_config, train (flags and --set override it).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the checkpoint in the model directory."
    ),
    nproc: int | None = typer.Option(
        None,
        "--nproc",
        help="Train with N processes on this machine (DistributedDataParallel: gloo on CPU, "
        "NCCL on GPUs) by running `torchrun --standalone --nproc-per-node N -m fastmc train "
        "...`; --batch-size stays the events per step of all N together.",
    ),
) -> None:
    """Train a generator on the train split of STORE (validation: its val split).

    Energies are in GeV inside fastmc.  The model directory gets config.json,
    weights.safetensors (best validation loss), history.json and checkpoint.* after every epoch.
    Several processes: --nproc N, or `torchrun --nproc-per-node N -m fastmc train ...`
    (docs/scale.md, also for several nodes).
    """
    from fastmc.config import from_dict
    from fastmc.models.base import get_model
    from fastmc.models.modeldir import ModelDir
    from fastmc.workflows.resume import resume_settings, schedule_note
    from fastmc.workflows.train_config import TrainConfig, load_yaml_config
    from fastmc.workflows.train_store import train_from_store

    if nproc is not None and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        raise typer.Exit(_launch_torchrun(nproc))
    main_rank = os.environ.get("RANK", "0") == "0"
    with errors_as_exit():
        n_threads = _set_threads(threads)
        if output.exists() and not output.is_dir():
            raise ConfigError(f"{output}: is a file; give a folder for the model (-o)")
        data: dict[str, Any] = load_yaml_config(config) if config else {}
        asked_name = model or data.get("model")
        # with --resume the stored model's settings are what the flags are checked against
        stored_name = ModelDir(output).read_config()["model"] if resume else None
        spec = get_model(asked_name or stored_name or "beta-vae")
        shorthands = {"--beta": beta, "--alpha": alpha, "--latent-dim": latent_dim,
                      "--flow-mode": flow_mode}
        model_cfg = _model_settings(spec, data, set_, shorthands)
        asked = _train_settings(data, set_, {
            "epochs": epochs, "batch_size": batch_size, "batches_per_epoch": batches_per_epoch,
            "lr": lr, "lr_schedule": lr_schedule, "ema": ema, "weight_decay": weight_decay,
            "patience": patience, "max_minutes": max_minutes, "device": device,
            "seed": seed, "process": process,
        })
        if resume:  # the stored run wins; a flag that differs from it is an error
            _, _, tc = resume_settings(output, model_name=asked_name, model_config=model_cfg,
                                       config=asked)
            note = schedule_note(output, tc)
            if note and main_rank:
                console.print(f"[yellow]note[/]: {note}", highlight=False)
        else:
            tc = from_dict(TrainConfig, asked)
        if not resume and ModelDir(output).has_checkpoint():
            raise ConfigError(
                f"{output} already holds a training run; pass --resume to continue it or "
                "choose another directory"
            )
        legend = [
            f"an epoch = {tc.batches_per_epoch} batches of {tc.batch_size} events (not a pass "
            "over the data); losses per event; * = best validation loss so far (weights saved)"
        ]
        bar = (progress_bar(f"train {spec.name}", tc.epochs * tc.batches_per_epoch,
                            unit="batches") if main_rank else contextlib.nullcontext(None))
        with bar as advance:

            def on_epoch(rec: dict[str, Any]) -> None:
                while legend:  # once, above the first epoch's line
                    console.print(legend.pop(), highlight=False)
                mark = " *" if rec["best"] else ""
                console.print(
                    f"epoch {rec['epoch']:3d}  train {rec['train_loss']:.4f}  "
                    f"val {rec['val_loss']:.4f}  ({rec['seconds']:.1f} s){mark}",
                    highlight=False,
                )

            result = train_from_store(store, output, model_name=asked_name or spec.name,
                                      model_config=model_cfg, config=asked if resume else tc,
                                      resume=resume, progress=advance, on_epoch=on_epoch)
    if not main_rank:
        return
    console.print(
        f"[green]done[/]: {len(result.history)} epochs ({_STOPPED.get(result.stopped, result.stopped)}), "
        "best val loss "
        f"{result.best_val_loss:.4f} at epoch {result.best_epoch}, {result.seconds:.0f} s with "
        f"{_threads_note(n_threads)}; model in {output}"
    )


def _launch_torchrun(nproc: int) -> int:
    """Run this very ``fastmc train`` command under torchrun with ``nproc`` processes."""
    import subprocess

    from fastmc.workflows.distributed import launch_command

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        argv.append(arg)
    with errors_as_exit():
        cmd = launch_command(nproc, argv)
    console.print(" ".join(cmd[1:]), highlight=False, markup=False)
    return subprocess.run(cmd, check=False).returncode


def _prior_line(process: str, report: dict[str, Any]) -> str:
    """One readable line of a prior fit's report (stdout)."""
    parts = [f"{process}: {report.get('method', 'fit')}",
             "converged" if report.get("converged") else "NOT converged (raise --max-iter)",
             f"{report.get('n_iter')} iterations", f"{report.get('events'):,} events"]
    if "effective_components" in report:
        parts.append(f"{report['effective_components']} effective components")
    if "mean_log_likelihood" in report:
        parts.append(f"mean log-likelihood {report['mean_log_likelihood']:.4g} per event "
                     "(latent units)")
    if "lower_bound" in report:
        parts.append(f"lower bound {report['lower_bound']:.4g} per event")
    return ", ".join(parts)


@app.command("fit-prior")
def fit_prior_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    prior: FitPrior = typer.Option(
        "bgmm", "--prior", help="bgmm (scikit-learn Bayesian mixture) or gmm (torch EM)."
    ),
    components: int = typer.Option(100, "--components", min=1, help="Mixture components."),
    store: Path | None = typer.Option(
        None, "--store", help="Event store with the training events (default: the one trained on)."
    ),
    process: str | None = typer.Option(
        None, "--process", help="Process to fit the prior for (default: every process of the model)."
    ),
    max_events: int = typer.Option(
        200_000, "--max-events", help="Training events whose latent codes are fitted, at most."
    ),
    max_iter: int = typer.Option(500, "--max-iter", help="EM iterations, at most."),
    codes: Codes = typer.Option(
        "posterior",
        "--codes",
        help="Fit on posterior draws z = mu + noise (posterior) or on encoder means (mean).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation."),
    device: Device = typer.Option("auto", "--device", help=DEVICE_HELP + " Used by gmm only."),
    threads: int | None = _threads_option(),
) -> None:
    """Fit a Gaussian-mixture latent prior per process and store it in MODEL_DIR (prior.safetensors)."""
    from fastmc.data.store import open_store
    from fastmc.devices import resolve_device
    from fastmc.models.modeldir import ModelDir
    from fastmc.workflows.priors import fit_prior

    with errors_as_exit():
        _set_threads(threads)
        mdir = ModelDir(model_dir)
        desc = mdir.read_config()
        store_path = store or (desc.get("data") or {}).get("store")
        if store_path is None:
            raise ConfigError("the model does not record its event store; pass --store")
        st = open_store(store_path)
        model = mdir.load(device=resolve_device(device) if prior == "gmm" else "cpu")
        procs = [process] if process else list(model.processes)
        for proc in procs:
            with progress_bar(f"fit {prior} {proc}", max_iter, unit="iterations") as advance:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    report = fit_prior(
                        model,
                        st,
                        prior,
                        process=proc,
                        components=components,
                        max_events=max_events,
                        seed=seed,
                        progress=advance,
                        max_iter=max_iter,
                        codes=codes,
                    )
            for w in caught:
                console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
            typer.echo(_prior_line(proc, report))
        mdir.write_priors(model)
    console.print(f"[green]done[/]: prior {prior!r} stored in {model_dir / 'prior.safetensors'}")


def _parse_params(items: list[str]) -> dict[str, float]:
    """``["m_gluino=1600"]`` -> ``{"m_gluino": 1600.0}``; ConfigError for a malformed item."""
    from fastmc.points import parse_params

    return parse_params(
        items, expected="--param expects KEY=VALUE with a number in GeV (e.g. m_gluino=1600)"
    )


@app.command("generate")
def generate_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file: .csv/.csv.gz (Dark Machines, MeV), .parquet, .root."
    ),
    n: int | None = typer.Option(
        None, "-n", "--events", min=1, help="Number of events to generate (or --cocktail --lumi)."
    ),
    prior: LatentPrior = typer.Option(
        "normal", "--prior", help="Latent prior of a VAE: bgmm and gmm need `fastmc fit-prior` "
        "first; truth encodes --truth-events. The flow takes normal only."
    ),
    truth_events: Path | None = typer.Option(
        None, "--truth-events", help="Input events for --prior truth (encoded, then noised)."
    ),
    process: str | None = typer.Option(
        None, "--process",
        help="Generate this process only (default: the training mixture of every process).",
    ),
    param: list[str] = typer.Option(
        [], "--param", metavar="KEY=VALUE",
        help="Physical parameter of --process (GeV, repeatable), e.g. --process gluino_01 "
        "--param m_gluino=1600, for a model trained on several parameter points.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Allow --param values outside the trained range (extrapolation)."
    ),
    cocktail: bool = typer.Option(
        False, "--cocktail",
        help="Draw the processes in proportion to their cross sections (unweighted events).",
    ),
    lumi: float | None = typer.Option(
        None, "--lumi", metavar="FB-1",
        help="With --cocktail: as many events as the cross sections give at this integrated "
        "luminosity (fb^-1), instead of -n.",
    ),
    where: str | None = typer.Option(
        None, "--where", metavar="EXPR",
        help='Keep only events in this region, e.g. "met > 500 and n_bjets >= 1" (GeV; the '
        "syntax: conditioning.md in docs).",
    ),
    region_path: str = typer.Option(
        "auto", "--region-path",
        help="auto: a model trained with --set lead=met (or ht) draws that observable truncated "
        "to the --where bounds first (faster); rejection: generate everything, then cut.",
    ),
    min_efficiency: float = typer.Option(
        1e-3, "--min-efficiency",
        help="Stop when --where/--channel keeps less than this share of a 10k-event pilot.",
    ),
    batch_size: int = typer.Option(10_000, "--batch-size", min=1, help="Events per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same events "
                             "(at the same --threads)."),
    device: Device = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = _threads_option(),
    channel: Channel | None = typer.Option(
        None, "--channel", help="Keep only events passing this Dark Machines selection.",
        show_default=False,
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output (never one of the inputs)."
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        metavar="K/M",
        help="Write only part K of M (0 <= K < M) of the run of N events, e.g. one job of a "
        "batch-farm array; the M parts in order are the unsharded run's events (merge them "
        "with `fastmc convert`).",
    ),
    block_size: int = typer.Option(
        1_000_000,
        "--block-size",
        help="Events per seed block (each block has its own seed; a --shard part is whole "
        "blocks). Keep it the same for every part of a run.",
    ),
    refine: bool | None = typer.Option(
        None, "--refine/--no-refine", show_default=False,
        help="Use the model's refiner (`fastmc refine`: whole events kept or dropped by a "
        "classifier; the kept share is recorded in the output's metadata). Default: when the "
        "model has one.",
    ),
    refine_mode: str = typer.Option(
        "reject", "--refine-mode",
        help="How the refiner applies: reject (keep or drop whole events: unweighted events), "
        "reject-uncapped (the same, the ~1% of kept events above the weight cap weighted w / cap "
        "instead of clipped: no bias from the cap), "
        "weights (keep every drawn event, the refiner's factor min(w, cap) / mean in its "
        "weight: weighted events, 3-5x faster; the effective share is in the metadata) or "
        "weights-uncapped (the factor w / mean: no bias from the cap, which lowers the mean HT "
        "of ttbar by ~0.6%, at a lower effective share).",
    ),
) -> None:
    """Generate N events with a trained model, streamed to OUTPUT (GeV inside; MeV in CSV)."""
    from fastmc.evaluate.generation import cap_note
    from fastmc.io import check_output, detect_format
    from fastmc.workflows.generate import (
        WEIGHTING_MODES,
        check_refine_mode,
        generate,
        parse_part,
        part_range,
    )

    with errors_as_exit():
        detect_format(output)  # a bad extension fails before the model is loaded
        check_output(output, inputs=[truth_events] if truth_events else [], overwrite=overwrite)
        n_threads = _set_threads(threads)
        if prior == "truth" and truth_events is None:
            raise ConfigError("--prior truth encodes given events: pass --truth-events FILE")
        if where is not None:
            from fastmc.region import parse_region

            parse_region(where)  # a syntax error before the model is loaded
        part = parse_part(shard) if shard is not None else None
        check_refine_mode(refine_mode, "--refine-mode")  # before the model is loaded
        if block_size < 1:
            raise ConfigError(f"--block-size must be >= 1, got {block_size}")
        if part is not None and n is None:
            raise ConfigError("--shard needs -n (the events of the whole run)")
        first, stop = part_range(n, block_size, part) if n is not None else (0, None)
        with progress_bar(f"generate ({prior})", None if stop is None else stop - first) as advance:
            report = generate(
                model_dir, output, n, prior=prior, process=process, cocktail=cocktail, lumi=lumi,
                params=_parse_params(param), force=force,
                batch_size=batch_size, seed=seed, device=device, channel=channel, where=where,
                min_efficiency=min_efficiency, region_path=region_path, truth_events=truth_events,
                progress=advance, shard_size=block_size, part=part, refine=refine,
                refine_mode=refine_mode,
            )
    msg = (f"[green]done[/]: {report.n:,} events in {output} ({report.events_per_s:,.0f} events/s "
           f"with {_threads_note(n_threads)})")
    if part is not None:
        msg += f"; part {part[0]}/{part[1]}: events {first:,} to {stop - 1:,} of {n:,}"
    if len(report.process_counts) > 1:
        msg += "; " + ", ".join(f"{p} {c:,}" for p, c in report.process_counts.items())
    if report.efficiency is not None and (channel or where):
        seen = report.refinement["kept"] if report.refinement else report.attempted
        msg += (f"; selection kept {100 * report.efficiency:.3g}% of {seen:,} "
                f"{'refined' if report.refinement else 'generated'} events ({report.region_path})")
    if report.refinement is not None and report.refinement.get("mode") in WEIGHTING_MODES:
        r = report.refinement
        msg += (f"; refinement weighted all {r['drawn']:,} drawn events (effective share "
                f"{r['effective_share'] or 0:.3f}, {cap_note(r)}; recorded in the file's metadata)")
    elif report.refinement is not None:
        r = report.refinement
        msg += (f"; refinement kept {100 * (r['acceptance'] or 0):.1f}% of {r['drawn']:,} drawn "
                f"events ({cap_note(r)}; recorded in the file's metadata)")
    if report.model_rejected_share:
        msg += (
            f"; the model rejected {100 * report.model_rejected_share:.1f}% of the events it drew "
            "(jets closer than the jet radius; recorded in the file's metadata)"
        )
    console.print(msg, highlight=False)


@app.command("bench")
def bench_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    prior: LatentPrior = typer.Option("normal", "--prior", help="Latent prior used for generation."),
    process: str | None = typer.Option(None, "--process", help="Process (default: the model's first)."),
    scale: float = typer.Option(
        1.0, "--scale", help="Multiply the number of benchmark events (1: 1e5 at batch 10k)."
    ),
    simulate: bool = typer.Option(
        True, "--simulate/--no-simulate", help="Also time `fastmc simulate` for the process."
    ),
    sim_process: str | None = typer.Option(
        None, "--sim-process", help="Simulation catalogue process (default: the model's process)."
    ),
    sim_events: int = typer.Option(200, "--sim-events", help="Events to simulate for the timing."),
    device: Device = typer.Option("auto", "--device", help="auto: CPU, and GPU when present."),
    threads: int | None = _threads_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout "
                                 "instead of the Markdown table (as `fastmc info --json`)."),
) -> None:
    """Generation events/s (batch 1, 100, 10k; memory, Parquet, CSV; CPU and GPU) vs simulation."""
    from fastmc.workflows.bench import format_markdown, run_bench

    with errors_as_exit():
        _set_threads(threads)
        rows_total = 3 * 4 + 3
        with progress_bar("bench", rows_total, unit="measurements") as advance:
            result = run_bench(
                model_dir,
                prior=prior,
                process=process,
                scale=scale,
                simulate=simulate,
                sim_process=sim_process,
                sim_events=sim_events,
                device=device,
                progress=advance,
            )
    typer.echo(json.dumps(result, indent=2) if as_json else format_markdown(result))


@app.command("export")
def export_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write, e.g. generator.onnx."),
    check_events: int = typer.Option(
        256, "--check-events", help="Fixed random inputs on which ONNX Runtime is compared with torch."
    ),
    speed: bool = typer.Option(
        False, "--speed", help="Also time ONNX Runtime against torch (batch 10k, 1 thread)."
    ),
) -> None:
    """Export a generator to ONNX: the VAE decoder (latent z -> event tensors, GeV) or the
    flow's sampling network (pattern + noise -> physics parameters); contract in docs/onnx.md.

    Needs the export extra: pip install 'fastmc[export]'.
    """
    from fastmc.workflows.export import export_onnx, onnx_speed

    with errors_as_exit():
        report = export_onnx(model_dir, output, check_events=check_events)
        timing = onnx_speed(model_dir, output) if speed else None
    ins = ", ".join(f"{k} {v}" for k, v in report.inputs.items())
    outs = ", ".join(f"{k} {v}" for k, v in report.outputs.items())
    console.print(f"[green]wrote[/] {output}: inputs {ins}; outputs {outs}", highlight=False)
    diff = ", ".join(f"{k} {v:.3g}" for k, v in report.max_abs_diff.items())
    console.print(f"ONNX Runtime vs torch, max |diff| on {check_events} inputs: {diff}",
                  highlight=False)
    for item in report.not_exported:
        console.print(f"not in the graph (do it in the caller): {item}", highlight=False)
    if timing is not None:
        console.print(f"events/s (batch {timing['batch_size']:,}, {timing['threads']} thread): "
                      f"torch {timing['torch_events_per_s']:,.0f}, ONNX Runtime "
                      f"{timing['onnx_events_per_s']:,.0f}", highlight=False)
