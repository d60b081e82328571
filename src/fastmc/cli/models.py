"""Commands of the models stage: ``train``, ``fit-prior``, ``generate``, ``bench``."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import typer

from fastmc.cli._app import app, console, errors_as_exit, fail, progress_bar

DEVICE_HELP = "auto (CUDA if available), cpu or cuda."
THREADS_HELP = (
    "CPU threads of torch (default: torch's choice); 1 is much faster for small batches "
    "when other jobs share the cores."
)


def _threads_option():
    return typer.Option(None, "--threads", help=THREADS_HELP)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _value_errors_as_exit():
    """errors_as_exit plus ValueError/FileNotFoundError as one-line errors."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        with errors_as_exit():
            try:
                yield
            except (ValueError, FileNotFoundError) as exc:
                raise fail(str(exc)) from None

    return ctx()


@app.command("train")
def train_cmd(
    store: Path = typer.Argument(..., help="Event store made by `fastmc prepare`."),
    output: Path = typer.Option(..., "-o", "--output", help="Model directory to write."),
    model: str | None = typer.Option(
        None, "--model", help="Generator: beta-vae (default), alpha-vae, or another registered one."
    ),
    beta: float | None = typer.Option(None, "--beta", help="beta-VAE KL weight (default 0.001)."),
    alpha: float | None = typer.Option(
        None, "--alpha", help="alpha-VAE latent noise std (latent units) (default 0.2)."
    ),
    latent_dim: int | None = typer.Option(None, "--latent-dim", help="VAE latent size (default 80)."),
    flow_mode: str | None = typer.Option(
        None,
        "--flow-mode",
        help="flow only: autoregressive (best fidelity) or coupling (fast generation) "
        "(default autoregressive).",
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (default 50)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Events per batch (default 1000; theses 10000)."
    ),
    batches_per_epoch: int | None = typer.Option(
        None, "--batches-per-epoch", help="Batches per epoch (default 100; theses 1000)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 0.001)."),
    patience: int | None = typer.Option(
        None, "--patience", help="Early stopping: epochs without a better val loss (default 10; 0 off)."
    ),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", help="Stop after the epoch that passes this wall time (minutes)."
    ),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP + " (default auto)"),
    threads: int | None = _threads_option(),
    seed: int | None = typer.Option(None, "--seed", help="Seed of weights, batches, noise (default 0)."),
    process: str | None = typer.Option(
        None, "--process", help="Train on this process of the store only (default: all)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML file with keys model, model_config, train (flags override it).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the checkpoint in the model directory."
    ),
) -> None:
    """Train a generator on the train split of STORE (validation: its val split).

    Energies are in GeV inside fastmc.  The model directory gets config.json,
    weights.safetensors (best validation loss), history.json and checkpoint.* after every epoch.
    """
    from fastmc.models.base import get_model
    from fastmc.train import TrainConfig, load_yaml_config, train_from_store

    with _value_errors_as_exit():
        _set_threads(threads)
        data: dict[str, Any] = load_yaml_config(config) if config else {}
        name = model or data.get("model") or "beta-vae"
        spec = get_model(name)
        model_cfg = dict(data.get("model_config") or {})
        fields = {f.name for f in dataclasses.fields(spec.config_cls)}
        for flag, key, value in (("--beta", "beta", beta), ("--alpha", "alpha", alpha)):
            if value is not None:
                if key not in fields:
                    raise ValueError(f"{flag} does not apply to model {name!r}")
                model_cfg[key] = value
        if latent_dim is not None:
            if "latent_dim" not in fields:
                raise ValueError(f"--latent-dim does not apply to model {name!r}")
            model_cfg["latent_dim"] = latent_dim
        if flow_mode is not None:
            if "mode" not in fields:
                raise ValueError(f"--flow-mode does not apply to model {name!r}")
            model_cfg["mode"] = flow_mode
        train_cfg = dict(data.get("train") or {})
        flags = {
            "epochs": epochs,
            "batch_size": batch_size,
            "batches_per_epoch": batches_per_epoch,
            "lr": lr,
            "patience": patience,
            "max_minutes": max_minutes,
            "device": device,
            "seed": seed,
            "process": process,
        }
        train_cfg.update({k: v for k, v in flags.items() if v is not None})
        from fastmc.models.base import config_from_dict

        tc = config_from_dict(TrainConfig, train_cfg)
        if not resume and (output / "checkpoint.json").exists():
            raise ValueError(
                f"{output} already holds a training run; pass --resume to continue it or "
                "choose another directory"
            )
        total = tc.epochs * tc.batches_per_epoch
        with progress_bar(f"train {name}", total, unit="batches") as advance:

            def on_epoch(rec: dict[str, Any]) -> None:
                mark = " *" if rec["best"] else ""
                console.print(
                    f"epoch {rec['epoch']:3d}  train {rec['train_loss']:.4f}  "
                    f"val {rec['val_loss']:.4f}  ({rec['seconds']:.1f} s){mark}",
                    highlight=False,
                )

            result = train_from_store(
                store,
                output,
                model_name=name,
                model_config=model_cfg,
                config=tc,
                resume=resume,
                progress=advance,
                on_epoch=on_epoch,
            )
    console.print(
        f"[green]done[/]: {len(result.history)} epochs ({result.stopped}), best val loss "
        f"{result.best_val_loss:.4f} at epoch {result.best_epoch}, {result.seconds:.0f} s; "
        f"model in {output}"
    )


@app.command("fit-prior")
def fit_prior_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    prior: str = typer.Option(
        "bgmm", "--prior", help="bgmm (scikit-learn Bayesian mixture) or gmm (torch EM)."
    ),
    components: int = typer.Option(100, "--components", help="Mixture components."),
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
    codes: str = typer.Option(
        "posterior",
        "--codes",
        help="Fit on posterior draws z = mu + noise (posterior) or on encoder means (mean).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initialisation."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP + " (gmm only)"),
    threads: int | None = _threads_option(),
) -> None:
    """Fit a Gaussian-mixture latent prior per process and store it in MODEL_DIR (prior.safetensors)."""
    from fastmc.data.store import open_store
    from fastmc.models.base import load_model, read_model_config, save_priors
    from fastmc.train import resolve_device

    with _value_errors_as_exit():
        _set_threads(threads)
        if prior not in ("bgmm", "gmm"):
            raise ValueError(f"--prior must be bgmm or gmm, got {prior!r}")
        desc = read_model_config(model_dir)
        store_path = store or (desc.get("data") or {}).get("store")
        if store_path is None:
            raise ValueError("the model does not record its event store; pass --store")
        st = open_store(store_path)
        model = load_model(model_dir, device=resolve_device(device) if prior == "gmm" else "cpu")
        procs = [process] if process else list(model.processes)
        for proc in procs:
            idx = model.process_index(proc)
            batches = _process_batches(st, proc, idx, max_events)
            with progress_bar(f"fit {prior} {proc}", max_iter, unit="iterations") as advance:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", RuntimeWarning)
                    report = model.fit_prior(
                        prior,
                        batches,
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
            console.print(f"{proc}: {json.dumps(report)}", highlight=False)
        save_priors(model, model_dir)
    console.print(f"[green]done[/]: prior {prior!r} stored in {model_dir / 'prior.safetensors'}")


def _process_batches(store: Any, process: str, model_index: int, max_events: int):
    """RawBatches of the train split of one process, labelled with the model's index."""
    import numpy as np

    from fastmc.train import raw_from_events

    ev = store.events("train", process)
    for s in range(0, min(len(ev), max_events), 10_000):
        part = ev[s : min(s + 10_000, max_events)]
        yield raw_from_events(part, process=np.full(len(part), model_index))


@app.command("generate")
def generate_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    n: int = typer.Option(..., "-n", "--events", help="Number of events to generate."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file: .csv/.csv.gz (Dark Machines, MeV), .parquet, .root."
    ),
    prior: str = typer.Option(
        "normal", "--prior", help="Latent prior: normal, bgmm, gmm (fit-prior first) or truth."
    ),
    truth_events: Path | None = typer.Option(
        None, "--truth-events", help="Input events for --prior truth (encoded, then noised)."
    ),
    process: str | None = typer.Option(None, "--process", help="Process (default: the model's first)."),
    batch_size: int = typer.Option(10_000, "--batch-size", help="Events per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same events."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = _threads_option(),
    channel: str | None = typer.Option(
        None, "--channel", help="Keep only events passing this selection (chan1, chan2a, chan2b, chan3)."
    ),
) -> None:
    """Generate N events with a trained model, streamed to OUTPUT (GeV inside; MeV in CSV)."""
    from fastmc.generate import generate

    with _value_errors_as_exit():
        _set_threads(threads)
        if prior == "truth" and truth_events is None:
            raise ValueError("--prior truth encodes given events: pass --truth-events FILE")
        with progress_bar(f"generate ({prior})", n) as advance:
            report = generate(
                model_dir,
                output,
                n,
                prior=prior,
                process=process,
                batch_size=batch_size,
                seed=seed,
                device=device,
                channel=channel,
                truth_events=truth_events,
                progress=advance,
            )
    msg = f"[green]done[/]: {report.n:,} events in {output} ({report.events_per_s:,.0f} events/s)"
    if channel:
        msg += f"; {channel} rejected {100 * report.rejected_share:.1f}% of {report.attempted:,}"
    console.print(msg, highlight=False)


@app.command("bench")
def bench_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train`."),
    prior: str = typer.Option("normal", "--prior", help="Latent prior used for generation."),
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
    device: str = typer.Option("auto", "--device", help="auto: CPU, and GPU when present; or cpu/cuda."),
    threads: int | None = _threads_option(),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
) -> None:
    """Generation events/s (batch 1, 100, 10k; memory, Parquet, CSV; CPU and GPU) vs simulation."""
    from fastmc.bench import format_markdown, run_bench

    with _value_errors_as_exit():
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
    console.print(format_markdown(result), highlight=False, markup=False)
    if json_out is not None:
        from fastmc.models.base import save_json

        save_json(json_out, result)
