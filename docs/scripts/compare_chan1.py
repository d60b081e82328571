"""Compare fastmc-simulated ttbar and njets with the real Dark Machines channel-1 sample.

Usage (from the repository root)::

    .venv/bin/fastmc simulate ttbar -n 600 --seed 101 --channel chan1 -o /tmp/sim/ttbar_chan1.parquet
    .venv/bin/python docs/scripts/compare_chan1.py --ttbar /tmp/sim/ttbar_chan1.parquet \
        --njets-events 3000 --out docs/img

The njets sample is simulated here (pT-hat > 300 GeV, no channel) and compared after the
channel-1 cuts *without* the two MET cuts (see docs/simulation.md for why).  Real data:
DarkMachines community, Zenodo doi:10.5281/zenodo.3961917, CC BY 4.0 (see
../shared/data/darkmachines/SOURCES.md).  Writes PNG plots and prints summary numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fastmc.events import Events
from fastmc.io import read_events
from fastmc.selection import passes_channel

REAL = Path(__file__).resolve().parents[2].parent / "shared/data/darkmachines"


def chan1_without_met(ev: Events) -> np.ndarray:
    """HT >= 600, >= 4 jets pT > 50, >= 1 jet pT > 200 (GeV); no MET cuts."""
    jets = ev.mask("j", "b")
    return (
        (ev.ht() >= 600)
        & ((jets & (ev.pt > 50)).sum(axis=1) >= 4)
        & ((jets & (ev.pt > 200)).sum(axis=1) >= 1)
    )


def observables(ev: Events) -> dict[str, np.ndarray]:
    jets = ev.mask("j", "b")
    lead = np.where(jets, ev.pt, 0).max(axis=1)
    c = ev.counts()
    return {
        "number of jets (j + b)": jets.sum(axis=1),
        "number of b-jets": c["b"],
        "number of leptons": c["e-"] + c["e+"] + c["m-"] + c["m+"],
        "MET [GeV]": ev.met,
        "leading-jet pT [GeV]": lead,
        "HT [GeV]": ev.ht(),
    }


BINS = {
    "number of jets (j + b)": np.arange(3.5, 13.5),
    "number of b-jets": np.arange(-0.5, 5.5),
    "number of leptons": np.arange(-0.5, 4.5),
    "MET [GeV]": np.linspace(0, 1200, 25),
    "leading-jet pT [GeV]": np.linspace(0, 1600, 33),
    "HT [GeV]": np.linspace(500, 3500, 31),
}


def plot(samples: dict[str, tuple[Events, str]], title: str, path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    obs = {name: observables(ev) for name, (ev, _) in samples.items()}
    for ax, key in zip(axes.flat, BINS, strict=True):
        for name, (ev, style) in samples.items():
            ax.hist(
                np.clip(obs[name][key], BINS[key][0], BINS[key][-1] - 1e-6),
                bins=BINS[key],
                density=True,
                histtype="step",
                linestyle=style,
                linewidth=1.6,
                label=f"{name} ({len(ev)})",
            )
        ax.set_xlabel(key)
        ax.set_ylabel("normalised")
        if "GeV" in key:
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.text(
        0.01, 0.005,
        "Real events: DarkMachines community, Zenodo 10.5281/zenodo.3961917 (CC BY 4.0)",
        fontsize=7,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(name: str, ev: Events) -> None:
    o = observables(ev)
    print(
        f"{name:32s} n={len(ev):5d} jets={o['number of jets (j + b)'].mean():.2f} "
        f"b={o['number of b-jets'].mean():.2f} lep={o['number of leptons'].mean():.2f} "
        f"MET med={np.median(o['MET [GeV]']):.0f} lead-jet med="
        f"{np.median(o['leading-jet pT [GeV]']):.0f} HT med={np.median(o['HT [GeV]']):.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ttbar", type=Path, required=True, help="fastmc ttbar file with --channel chan1")
    ap.add_argument("--njets-events", type=int, default=3000)
    ap.add_argument("--njets-cache", type=Path, default=Path("/tmp/sim/njets_pthat300.parquet"))
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    args = ap.parse_args()

    real = read_events(REAL / "background_chan1_sample.csv")
    real_tt = real[real.process == "ttbar"]
    real_nj = real[real.process == "njets"]
    sim_tt = read_events(args.ttbar)
    assert passes_channel(sim_tt, "chan1").all()
    if not args.njets_cache.exists():
        from fastmc.simulate import simulate_to_file

        simulate_to_file(
            args.njets_cache, "njets", args.njets_events, seed=102, params={"pthat_min": 300}
        )
    nj_all = read_events(args.njets_cache)
    sim_nj = nj_all[chan1_without_met(nj_all)]
    met_pass = passes_channel(sim_nj, "chan1")
    print(f"njets (pT-hat > 300): {len(nj_all)} stored, {len(sim_nj)} pass chan1 without MET, "
          f"{int(met_pass.sum())} pass full chan1; MET > 200: {(sim_nj.met > 200).mean():.3%}")
    for name, ev in (("real ttbar (chan1)", real_tt), ("fastmc ttbar (chan1)", sim_tt),
                     ("real njets (chan1)", real_nj), ("fastmc njets (chan1 w/o MET)", sim_nj)):
        summary(name, ev)  # fmt: skip
    plot(
        {"Dark Machines ttbar, chan1": (real_tt, "-"), "fastmc ttbar, chan1": (sim_tt, "--")},
        "ttbar in channel 1: real Dark Machines sample vs fastmc (Pythia 8 + fastmc detector)",
        args.out / "sim_chan1_ttbar.png",
    )
    plot(
        {"Dark Machines njets, chan1": (real_nj, "-"),
         "fastmc njets, chan1 without MET cuts": (sim_nj, "--")},
        "njets: real channel-1 sample vs fastmc (chan1 cuts without MET >= 200, MET/HT >= 0.2)",
        args.out / "sim_chan1_njets.png",
    )  # fmt: skip
    print(f"plots in {args.out}")


if __name__ == "__main__":
    main()
