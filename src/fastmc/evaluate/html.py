"""The self-contained ``index.html`` of an evaluation report (inline CSS, images as base64)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastmc.evaluate.generation import generation_note
from fastmc.evaluate.observables import OBSERVABLES
from fastmc.evaluate.report_plots import safe_name
from fastmc.events import TYPE_NAMES

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.ok{background:#e6f4e6}.warn{background:#fff1cc}.bad{background:#fbd5d5}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0}.grid img{width:460px}
.wide img{width:100%;max-width:1200px}p.note{color:#555;font-size:.9em;max-width:60em}
p.warn{background:#fff1cc;padding:4px 8px;max-width:60em}
"""


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "skipped"
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if x.is_integer() and abs(x) < 1e5:
        return str(int(x))
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


def _pm(value: Any, err: Any) -> str:
    """``value &plusmn; err`` with the error to two significant digits, the value to the same
    decimal place (at least 3 decimals); "skipped" when there is no value."""
    if value is None or not math.isfinite(float(value)):
        return "skipped"
    if err is None or not math.isfinite(float(err)) or err <= 0:
        return f"{float(value):.3f}"
    d = int(min(max(3, 1 - math.floor(math.log10(float(err)))), 6))
    return f"{float(value):.{d}f} &plusmn; {float(err):.{d}f}"


def _sig_class(sig: Any) -> str:
    if sig is None:
        return ""
    return "ok" if sig < 3 else ("warn" if sig < 5 else "bad")


def _table(headers: list[str], rows: list[list[tuple[str, str]]]) -> str:
    head = "".join(f"<th{' class=l' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, (text, cls) in enumerate(row):
            classes = " ".join(c for c in (cls, "l" if i == 0 else "") if c)
            cells.append(f"<td class='{classes}'>{text}</td>" if classes else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _stat_cells(st: dict[str, Any] | None) -> list[tuple[str, str]]:
    if st is None:
        return [("skipped", "")] * 4
    sig = st.get("significance")
    return [
        (_f(st.get("value")), ""),
        (f"{_f(st.get('floor_mean'))} &plusmn; {_f(st.get('floor_std'), 2)}", ""),
        (_f(st.get("ratio")), ""),
        (_f(sig, 2), _sig_class(sig)),
    ]


def _warnings(m: dict[str, Any]) -> list[str]:
    return [f"<p class=warn>{html.escape(w)}</p>" for w in m.get("warnings", [])]


def _img(path: Any) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"


def _headline(m: dict[str, Any]) -> list[str]:
    """The whole-event classifier table (the headline) and its per-multiplicity AUCs."""
    we = m.get("whole_event")
    esc = html.escape
    if not we:
        return ["<h2 id=headline>Whole-event classifier test</h2><p>skipped (run without --no-classifier)</p>"]
    rows, mult = [], []
    for label, d in we["samples"].items():
        rows.append([
            (esc(label), ""),
            (_pm(d["auc"], d["auc_err"]), ""),
            (_pm(d["floor_auc"], d["floor_auc_err"]), ""),
            (_f(d["significance"], 2), _sig_class(d["significance"])),
            (f"{d['n_generated']} vs {d['n_reference']}", ""),
            (f"{d['floor_n_generated']} vs {d['floor_n_reference']}", ""),
            (_f(d["weights"]["generated"]["frac_w_gt_5"]), ""),
            (_f(d["weights"]["reference"]["frac_w_lt_0.2"]), ""),
        ])
        for b in d["per_n_jets"]:
            mult.append([(esc(label), ""), (esc(b["n_jets"]), ""),
                         (_pm(b["auc"], b["auc_err"]), ""),
                         (_pm(b["floor_auc"], b["floor_auc_err"]), ""),
                         (_f(b["significance"], 2), _sig_class(b["significance"])),
                         (f"{b['n_generated']} vs {b['n_reference']}", "")])
        if d["per_n_jets_skipped"]:
            mult.append([(esc(label), ""), (esc(", ".join(d["per_n_jets_skipped"])), ""),
                         ("skipped: too few events", ""), ("", ""), ("", ""), ("", "")])
    out = [
        "<h2 id=headline>Whole-event classifier test (headline)</h2>",
        "<p class=note>Gradient-boosted trees on every object, every jet pair and triplet "
        f"({len(we['features'])} features, see docs/evaluation.md), k-fold: every event scored once. "
        "AUC 0.5 = indistinguishable. Each sample against the <b>whole</b> reference at its own size; "
        f"floor: {esc(we['floor_source'])} (sizes given). significance = (AUC &minus; floor) / combined "
        "error; &ge; 5 flagged. w = p/(1&minus;p) estimates p<sub>gen</sub>/p<sub>ref</sub>: generated "
        "events at w &gt; 5 sit where the reference has few; reference events at w &lt; 0.2 sit where "
        "the generator has few.</p>",
        _table(["sample", "AUC", "floor AUC", "significance", "n gen vs ref", "floor n", "gen w>5",
                "ref w<0.2"], rows),
        "<h3>AUC per jet multiplicity</h3>",
        _table(["sample", "jets", "AUC", "floor AUC", "significance", "n gen vs ref"], mult),
    ]
    return out


def _artificial(m: dict[str, Any]) -> list[str]:
    we = m.get("whole_event")
    if not we:
        return []
    esc = html.escape
    parts = ["<h2>Most artificial generated events (largest classifier weight)</h2>"]
    for label, d in we["samples"].items():
        rows = d["most_artificial"]
        if not rows:
            continue
        keys = [k for k in rows[0] if k != "index"]
        parts.append(f"<h3>{esc(label)}</h3>")
        parts.append(_table(["event", *keys], [[(str(r["index"]), "")] + [(_f(r.get(k)), "") for k in keys]
                                              for r in rows]))
    return parts


def _pct(x: Any) -> str:
    return "skipped" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.2f}%"


def _share_row(name: str, d: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not d:
        return [(html.escape(name), ""), ("skipped", ""), ("", ""), ("", ""), ("", "")]
    z = d["z"]
    cls = "bad" if d["flagged"] else ("warn" if z is not None and abs(z) >= 3 else "ok")
    return [(html.escape(name), ""), (_pct(d["reference"]), ""), (_pct(d["generated"]), ""), (_f(z, 2), cls),
            (f"{d['n_generated']} vs {d['n_reference']}", "")]


def _boundaries(m: dict[str, Any]) -> list[str]:
    esc = html.escape
    parts = ["<h2>Boundaries (detector)</h2>",
             "<p class=note>Shares of events (jet pairs) or objects (pT) at a detector boundary, generated "
             "vs reference; z = difference / binomial error; flagged (red) at |z| &ge; 5 with a factor 1.5: "
             "a pile-up at the jet radius R or at a pT threshold, or an emptied threshold window.</p>"]
    for label, d in m["samples"].items():
        b = d.get("boundary")
        if not b:
            continue
        r = b["jet_radius"]
        rows = [_share_row(f"closest jet pair |dR - {r}| < {b['dr_window']}", b["closest_pair_near_radius"]),
                _share_row(f"closest jet pair dR < {r - b['dr_tolerance']:.2f}", b["closest_pair_below_radius"])]
        for kind, e in b["pt_near_threshold"].items():
            lo_hi = f" [{e['window_gev'][0]:.1f}, {e['window_gev'][1]:.1f}] GeV" if e else ""
            rows.append(_share_row(f"{kind} with pT in{lo_hi}", e))
        parts += [f"<h3>{esc(label)}</h3>",
                  _table(["check", "reference", "generated", "z", "n gen vs ref"], rows)]
        gen_note = generation_note(d.get("generation"))
        if gen_note:
            parts.append(f"<p>Generation (from the file's metadata): {esc(gen_note)}; whole events "
                         "were kept or dropped, none moved.</p>")
        mem = d.get("memorisation")
        if mem:
            parts.append(
                f"<p>Memorisation: {_pct(mem['close_generated'])} of generated vs {_pct(mem['close_reference'])} "
                f"of held-out reference events within the reference's 1% nearest distance to the training sample "
                f"(z = {_f(mem['z'], 2)}{', flagged' if mem['flagged'] else ''}); median distances "
                f"{_f(mem['median_distance_generated'])} vs {_f(mem['median_distance_reference'])}; "
                f"exact copies {mem['exact_copies']}; n = {mem['n_generated']} / {mem['n_reference']} queries, "
                f"{mem['n_train']} training events.</p>")
    return parts


def _plot_sections(m: dict[str, Any], plots: Sequence[Path]) -> list[str]:
    esc = html.escape
    over = [p for p in plots if p.parent.name == "overview"]
    parts = ["<h2>Plots: overview of all samples</h2><p class=note>Reference filled (grey) with its "
             "statistical band, each sample a line on top; unit area; under/overflow in the edge bins; "
             "ratio panel 0.5&ndash;1.5, points outside drawn as triangles at the edge. PDFs beside the "
             "PNGs in plots/. 2-D: phi of the two leading jets (the 'holes' test of Otten et al.) and "
             "eta vs pT of the leading jet.</p>"]
    wide = {"multiplicities", "phi_jet1_vs_jet2", "eta_vs_pt_jet1"}
    parts.append("<div class=grid>")
    parts += [f"<figure>{_img(p)}</figure>" for p in over if p.stem not in wide]
    parts.append("</div>")
    parts += [f"<figure class=wide>{_img(p)}</figure>" for p in over if p.stem in wide]
    groups: dict[Path, list[Path]] = {}
    for p in plots:
        if p.parent.name != "overview":
            groups.setdefault(p.parent, []).append(p)
    labels = {safe_name(k): k for k in m["samples"]}
    for folder, ps in groups.items():
        label = labels.get(folder.name, folder.name)
        parts.append(f"<details><summary>Every observable: {esc(label)} against the reference "
                     f"({len(ps)} plots)</summary><div class=grid>")
        parts += [f"<figure>{_img(p)}</figure>" for p in ps]
        parts.append("</div></details>")
    return parts


def render_html(metrics: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    """The report page of ``metrics`` (the content of metrics.json) with the PNGs ``plots``
    embedded: the whole-event classifier headline first, then the summary ranking, the
    metric tables with floors and the plots."""
    m = metrics
    esc = html.escape
    plots = list(plots)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<title>fastmc evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>fastmc evaluation report</h1>",
        f"<p>Reference <b>{esc(str(m['reference']['label']))}</b>: {m['reference']['n_events']} events. "
        f"{m['repeats']} seeded splits for per-observable floors (seed {m['seed']}); floors: "
        f"{esc(m['floor_source'])}. fastmc {esc(m['fastmc_version'])}.</p>",
        *_warnings(m),
        *_headline(m),
        "<h2>Summary (best first)</h2>",
        "<p class=note>Every distance is computed between n generated and n reference events "
        "(n per sample, column 'n compared') and shown beside its <i>floor</i>: the same distance "
        "between two independent reference samples of the same size (mean &plusmn; spread over "
        "splits). ratio = value / floor; significance = (value &minus; floor) / pooled spread of one "
        "split (green &lt; 3, yellow 3&ndash;5, red &ge; 5). W1 is in units of the reference standard "
        "deviation; KS in [0, 1]; JS divergence base 2; chi2 is chi2/ndf of unit-area histograms; FPD "
        "and KPD are on the standardised observable vector (energies as log(1 + E/GeV)). AUC: the "
        "whole-event classifier above.</p>",
    ]
    rows = []
    for s in m["summary"]:
        d = m["samples"][s["label"]]
        kind = " (reconstruction, not generation)" if d.get("kind") == "reconstruction" else ""
        rows.append([
            (esc(s["label"]) + kind, ""),
            (str(s["rank"]), ""),
            (str(s["n_events"]), ""),
            (str(d.get("n_compared", "skipped")), ""),
            (_pm(s["auc"], s["auc_err"]), _sig_class(s.get("auc_significance"))),
            (_pm(s["auc_floor"], s["auc_floor_err"]), ""),
            (_f(s["w1_ratio_median"]), ""),
            (f"{_f(s['w1_ratio_max'])} ({esc(s['w1_worst'])})", ""),
            (f"{_f(s['max_significance'], 2)} ({esc(s['worst_metric'])})", _sig_class(s["max_significance"])),
            (f"{_f(s['fpd'])} / {_f(s['fpd_floor'])}", _sig_class(s["fpd_significance"])),
            (f"{_f(s['kpd'])} / {_f(s['kpd_floor'])}", _sig_class(s["kpd_significance"])),
            (_f(s["physicality"]), ""),
        ])
    parts.append(_table(
        ["sample", "rank", "events", "n compared", "AUC", "AUC floor", "W1/floor median", "W1/floor worst",
         "max significance", "FPD / floor", "KPD / floor", "physicality"], rows))
    parts += _artificial(m)
    parts += _boundaries(m)

    # physicality
    checks = [k for k in m["reference"]["physicality"] if k != "n_events"]
    ref_label = str(m["reference"]["label"])
    ref_label = ref_label if "reference" in ref_label else f"{ref_label} (reference)"
    prow = [[(esc(ref_label), "")] +
            [(_f(m["reference"]["physicality"][c]), "") for c in checks]]
    for label, d in m["samples"].items():
        prow.append([(esc(label), "")] + [(_f(d["physicality"].get(c)), "") for c in checks])
    parts += ["<h2>Physicality (share of events passing)</h2>", _table(["sample", *checks], prow)]

    wrow = []
    for label, d in m["samples"].items():
        for key in ("fpd", "kpd"):
            if key in d["metrics"]:
                wrow.append([(f"{esc(label)}: {key.upper()}", ""), *_stat_cells(d["metrics"][key])])
    if wrow:
        parts += ["<h2>Whole event</h2>", _table(["metric", "value", "floor", "ratio", "significance"], wrow)]

    # multiplicities
    mrow = []
    for label, d in m["samples"].items():
        for t in TYPE_NAMES[1:]:
            mrow.append([(f"{esc(label)}: {t}", ""), *_stat_cells(d["metrics"].get(f"mult_chi2/{t}"))])
    parts += ["<h2>Object multiplicities per type (chi2/ndf)</h2>",
              _table(["sample: type", "value", "floor", "ratio", "significance"], mrow)]

    # per observable
    for label, d in m["samples"].items():
        parts.append(f"<h2>Per observable: {esc(label)}</h2>")
        orow = []
        for spec in OBSERVABLES:
            row = [(f"{esc(spec.name)} [{esc(spec.unit) or '&ndash;'}]", "")]
            for metric in ("w1", "ks", "js", "chi2"):
                st = d["metrics"].get(f"{metric}/{spec.name}")
                cells = _stat_cells(st)
                row += [cells[0], cells[1], cells[3]]
            orow.append(row)
        hdr = ["observable"]
        for metric in ("W1/std", "KS", "JS", "chi2/ndf"):
            hdr += [metric, "floor", "sig."]
        parts.append(_table(hdr, orow))

    # plots
    if plots:
        parts += _plot_sections(m, plots)
    parts.append("</body></html>")
    return "\n".join(parts)
