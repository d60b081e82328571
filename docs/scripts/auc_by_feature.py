"""Which whole-event features tell a generated sample from Monte Carlo, one feature or one group
of features at a time.

Usage (from the repository root)::

    .venv/bin/python docs/scripts/auc_by_feature.py REFERENCE.parquet GENERATED.parquet [--top 25]

A gradient-boosted classifier (:func:`fastmc.evaluate.classifier.classifier_test`, half of
each sample held out; not the k-fold whole-event test, so the numbers are its own) on the
features of :func:`fastmc.evaluate.features.whole_event_features`, first each
feature alone (the ``--top`` highest AUCs), then each group (every jet's log pT, every pair's
mass, ...).  A feature whose AUC alone is near 0.5 can still matter jointly: the groups show
where the correlations are missing.  Lepton-jet distances were found this way (docs/results.md,
session 5 of issue 13).  Seeded: the same files give the same numbers.
"""

from __future__ import annotations

import argparse
import re

from fastmc.evaluate.classifier import classifier_test
from fastmc.evaluate.features import whole_event_features
from fastmc.io import read_events

GROUPS = {
    "log pT": r"_logpt$", "eta": r"_eta$", "azimuth to the leading object": r"_dphi$",
    "jet log mass": r"jet\d_logm$", "b tag": r"_btag$", "jet-pair dR": r"^dr_j\dj\d$",
    "jet-pair mass": r"^m_j\dj\d$", "three-jet mass": r"^m_j\dj\dj\d", "lepton-jet dR": r"^dr_l",
    "MET": r"met",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference")
    ap.add_argument("generated")
    ap.add_argument("--top", type=int, default=25, help="single features to print (25)")
    args = ap.parse_args()
    ref = whole_event_features(read_events(args.reference))
    gen = whole_event_features(read_events(args.generated))
    names = list(ref.names)
    single = sorted(
        ((classifier_test(ref.values[:, [i]], gen.values[:, [i]], seed=0).auc, n)
         for i, n in enumerate(names)),
        reverse=True,
    )
    print(f"{len(names)} features; AUC of each alone (top {args.top}):")
    for auc, name in single[: args.top]:
        print(f"  {name:24s} {auc:.3f}")
    print("AUC of each group:")
    for label, pattern in GROUPS.items():
        idx = [i for i, n in enumerate(names) if re.search(pattern, n)]
        if idx:
            r = classifier_test(ref.values[:, idx], gen.values[:, idx], seed=0)
            print(f"  {label:30s} ({len(idx):2d} features) {r.auc:.3f} +- {r.auc_err:.3f}")


if __name__ == "__main__":
    main()
