"""The ``refine`` command: fit a model's classifier refinement (:mod:`fastmc.workflows.refine`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from fastmc.cli._app import app, console, errors_as_exit


@app.command("refine")
def refine_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory from `fastmc train` (one process)."),
    train: list[str] = typer.Option(
        ..., "--train", "-t",
        help="The model's training events: its event store (the training split is used) or "
        "event files (repeatable; Dark Machines CSV in MeV, Parquet or ROOT in GeV; globs). "
        "Never the sample you evaluate against.",
    ),
    events: int | None = typer.Option(
        None, "--events", min=1000, show_default=False,
        help="Events the model generates per stage of the fit. Default: twice the training "
        "events, within 20,000-100,000.",
    ),
    held_out: int = typer.Option(100_000, "--held-out", min=1000,
                                 help="Further generated events that set the weight cap and measure the "
                                 "marginal closure."),
    max_iter: int = typer.Option(300, "--max-iter", min=1,
                                 help="Trees at most per stage (early stopping)."),
    stages: int = typer.Option(
        2, "--stages", min=1, max=5,
        help="Classifiers fitted in turn, each on fresh generated events weighted by the "
        "earlier ones (1: a single classifier, which left ttbar's HT 1.5% low).",
    ),
    cap_quantile: float = typer.Option(
        0.99, "--cap-quantile", min=0.5, max=1.0,
        help="The weight cap is this quantile of the weights of generated events (1 minus it: "
        "the share of events whose correction is clipped).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the fit's generation and classifier."),
    prior: str = typer.Option(
        "normal", "--prior", help="Latent prior the model generates with (a VAE's; the flow: "
        "normal): the refiner corrects that prior's output only.",
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, show_default=False,
                                       help="CPU threads (torch and the classifier)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing refiner."),
) -> None:
    """Fit a classifier refinement: generation then keeps or drops whole events so that they
    follow the training events (DCTR, arXiv:2009.03796); `fastmc generate` uses it."""
    from fastmc.cli.models import _set_threads
    from fastmc.workflows.refine import RefineConfig, refine_model_dir

    with errors_as_exit():
        n = _set_threads(threads)
        config = RefineConfig(events=events, held_out=held_out, max_iter=max_iter,
                              cap_quantile=cap_quantile, seed=seed, prior=prior, stages=stages)
        with console.status("refine") as status, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            refiner = refine_model_dir(
                model_dir, train, config=config, threads=n, overwrite=overwrite,
                progress=lambda msg: status.update(f"refine: {msg}"),
            )
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
    i = refiner.info
    console.print(
        f"[green]done[/]: refiner in {model_dir}/refiner.safetensors: {i['trees']} trees in "
        f"{len(i['stages'])} stage(s) on {i['training_events']:,} training vs "
        f"{i['generated_events']:,} generated events (validation log-loss "
        f"{_losses(i['stages'])}; 0.6931 = indistinguishable); "
        f"generation will keep {100 * i['acceptance']:.1f}% of drawn events, "
        f"{100 * i['clipped_share']:.2f}% above the weight cap {i['cap']:.3g}; mean weight over "
        f"generated events {i['mean_weight_generated']:.3f} (1 = calibrated) ({i['seconds']:.0f} s)",
        highlight=False,
    )
    c = i.get("closure")
    if c:
        worst = ", ".join(f"{n} {v:.1f}" for n, v in c["worst_after"][:3])
        console.print(
            f"marginal closure of held-out generated events against the training events "
            f"(chi2/ndf per feature, mean of {c['features']}; 1 = as the training events): "
            f"{c['before']:.2f} unweighted, {c['after']:.2f} with the weights (worst: {worst})",
            highlight=False,
        )


def _losses(stages: list[dict]) -> str:
    """The validation log-loss of each stage, e.g. ``0.6524 -> 0.6862``."""
    return " -> ".join(f"{s['validation_log_loss'] or float('nan'):.4f}" for s in stages)
