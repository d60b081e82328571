"""ONNX export (issue 16): ONNX Runtime against torch on fixed inputs, VAE and flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.models.base import build_model
from fastmc.workflows.export import export_onnx, run_onnx
from modelhelpers import TINY, TINY_CONFIGS, make_events

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_vae_decoder_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("beta-vae", dict(TINY), processes=("ttbar",))
    model.fit_data(RawBatch.from_events(make_events(200, seed=3, process="ttbar")))
    model.eval()
    path = tmp_path / "generator.onnx"
    report = export_onnx(model, path, check_events=300)
    assert report.inputs == {"z": ["B", 4]}
    assert set(report.outputs) == {"types", "p4", "met", "met_phi", "type_logits"}
    assert report.max_abs_diff["types"] == 0  # no object type differs
    assert max(report.max_abs_diff.values()) < 1e-3  # GeV; float32 of values up to ~1e3
    # the contract: the graph's events are model.decode(z) (dynamic batch size: 7 here)
    z = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    out = run_onnx(path, {"z": z.numpy()})
    with torch.no_grad():
        ref = model.decode(z)
    assert out["types"].shape == (7, 19) and np.array_equal(out["types"], ref.types.numpy())
    np.testing.assert_allclose(out["p4"], ref.p4.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["met"], ref.met.numpy(), rtol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["model"] == "beta-vae" and props["units"] == "GeV, radians"


def test_flow_sampling_network_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = {**TINY_CONFIGS["flow"], "mode": "coupling"}
    model = build_model("flow", cfg, processes=("ttbar",))
    model.fit_data(RawBatch.from_events(make_events(200, seed=4, process="ttbar")))
    model.eval()
    report = export_onnx(model, tmp_path / "flow.onnx", check_events=200)
    assert set(report.inputs) == {"pattern", "z"} and set(report.outputs) == {"x", "slot_types"}
    assert report.max_abs_diff["slot_types"] == 0
    assert report.max_abs_diff["x"] < 1e-3
    assert any("Parameterisation.decode" in item for item in report.not_exported)


def test_flow_conditioned_on_processes_is_refused(tmp_path: Path) -> None:
    """The graph has no process input: exporting a multi-process flow would silently give the
    first process only, so it is refused with what to do instead."""
    from fastmc.errors import ConfigError

    model = build_model("flow", {**TINY_CONFIGS["flow"], "mode": "coupling"}, processes=("ttbar", "z_jets"))
    events = make_events(200, seed=4, process="ttbar")
    model.fit_data(RawBatch.from_events(events))
    with pytest.raises(ConfigError, match=r"one-process flows.*--process"):
        export_onnx(model, tmp_path / "flow.onnx", check_events=10)
    assert not (tmp_path / "flow.onnx").exists()
