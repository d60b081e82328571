"""Print the headline numbers of every metrics.json under a folder (whole-event AUC, per-multiplicity,
boundary share, W1 ratios)."""
import json
import pathlib
import sys

for p in sorted(pathlib.Path(sys.argv[1]).rglob("metrics.json")):
    d = json.loads(p.read_text())
    we = d["whole_event"]["samples"]
    summ = {s["label"]: s for s in d["summary"]}
    for lab, s in we.items():
        per = " ".join(f"{r.get('n_jets')}j:{r['auc']:.3f}({r.get('n_generated', r.get('n', '?'))})"
                       for r in s.get("per_n_jets", []) if isinstance(r, dict) and "auc" in r)
        b = d["samples"].get(lab, {}).get("boundary", {})
        sm = summ.get(lab, {})
        print(f"{p.parent.name:14s} {lab:18s} AUC {s['auc']:.3f}+-{s['auc_err']:.3f} floor {s['floor_auc']:.3f} "
              f"n={s['n_generated']}/{s['n_reference']} | W1 med {sm.get('w1_ratio_median', float('nan')):.2f} "
              f"max {sm.get('w1_ratio_max', float('nan')):.2f} ({sm.get('w1_worst')}) | "
              f"near-R gen {b.get('closest_pair_near_radius', {}).get('generated', float('nan')):.4f} ref {b.get('closest_pair_near_radius', {}).get('reference', float('nan')):.4f}")
        if per:
            print("     per-mult:", per)
