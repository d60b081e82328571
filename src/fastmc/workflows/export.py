"""ONNX export of a trained generator: ``fastmc export MODEL -o generator.onnx``.

The graph holds what is deterministic: the caller (C++ experiment software, ONNX Runtime)
draws the random inputs and feeds them.  The contract of each model family is in
docs/onnx.md; in short:

VAE (beta-vae, alpha-vae): one graph, latent codes -> events
    input  ``z``         float32 [B, latent_dim]  latent codes; standard normal for the
                                                  ``normal`` prior (a fitted mixture prior:
                                                  draw z from it, see docs/onnx.md)
    output ``types``     int64 [B, K]             type codes 0..7 (0 padding; 1..7 = j, b,
                                                  e-, e+, m-, m+, g), Dark Machines order
           ``p4``        float32 [B, K, 4]        (E, pT, eta, phi), GeV, radians; 0 for padding
           ``met``       float32 [B]              MET, GeV
           ``met_phi``   float32 [B]              MET azimuth, radians in (-pi, pi]
           ``type_logits`` float32 [B, K, 8]      the decoder's type logits (before the
                                                  argmax: for models with sample_types)
    The graph is the model's decoder plus its encoding's inverse (de-standardisation,
    10^x, phi wrap, padding, the Dark Machines sort), so its events equal
    ``model.decode(z)`` (types by argmax).

Flow: see :mod:`fastmc.workflows.export_flow` (the conditioner networks export; the spline
inversion, whose bin search has no ONNX export here, does not).

The file's ``metadata_props`` record the fastmc version, the model name, its processes, the
inputs' meaning and the units, so that a reader of the file alone knows what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastmc import __version__
from fastmc.errors import ConfigError, require
from fastmc.models.base import GenerativeModel
from fastmc.models.modeldir import load_model

__all__ = ["ExportReport", "export_onnx", "onnx_parity", "onnx_speed", "run_onnx"]

OPSET = 17


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_onnx` wrote: the graph's inputs and outputs and what it leaves out."""

    path: str
    model: str
    inputs: dict[str, list[Any]]  # name -> shape ("B" for the batch axis)
    outputs: dict[str, list[Any]]
    not_exported: list[str]
    max_abs_diff: dict[str, float]  # ONNX Runtime vs torch on fixed inputs, per output

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class VAEGenerator(torch.nn.Module):
    """A VAE's decoder and encoding inverse as one traceable module: z -> event tensors."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, feats, met = self.model.decode_tensors(z)
        raw = self.model.encoding.decode(types=logits.argmax(-1), features=feats, met=met)
        return raw.types, raw.p4, raw.met, raw.met_phi, logits


def _vae_spec(model: GenerativeModel) -> dict[str, Any]:
    k, latent = model.config.max_objects, model.config.latent_dim
    return {
        "module": VAEGenerator(model),
        "inputs": {"z": ["B", latent]},
        "outputs": {"types": ["B", k], "p4": ["B", k, 4], "met": ["B"], "met_phi": ["B"],
                    "type_logits": ["B", k, model.n_classes]},
        "example": {"z": torch.randn(4, latent, generator=torch.Generator().manual_seed(0))},
        "not_exported": ["latent prior sampling (draw z ~ N(0, 1), or from the fitted mixture "
                         "in prior.safetensors)"]
        + (["type sampling (sample_types: draw from softmax(type_logits))"]
           if model.config.sample_types else []),
        "meta": {"latent_dim": latent, "input_z": "latent codes, standard normal for the "
                 "normal prior"},
    }


def _spec(model: GenerativeModel) -> dict[str, Any]:
    if hasattr(model, "decode_tensors") and hasattr(model, "encoding"):
        return _vae_spec(model)
    if model.name == "flow":
        from fastmc.workflows.export_flow import flow_spec

        return flow_spec(model)
    raise ConfigError(f"no ONNX export for model {model.name!r} (VAEs and the flow export)")


def _write(spec: Mapping[str, Any], model: GenerativeModel, path: Path) -> None:
    onnx = require("onnx", "export")
    names_in, names_out = list(spec["inputs"]), list(spec["outputs"])
    axes = {n: {0: "B"} for n in names_in + names_out}
    args = tuple(spec["example"][n] for n in names_in)
    with warnings.catch_warnings():
        # tracer notes (shape checks become constants) and the TorchScript exporter's notice
        warnings.simplefilter("ignore")
        torch.onnx.export(spec["module"].eval(), args, str(path), input_names=names_in,
                          output_names=names_out, dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    proto = onnx.load(str(path))
    meta = {"fastmc_version": __version__, "model": model.name,
            "processes": json.dumps(list(model.processes)), "units": "GeV, radians",
            "max_objects": str(model.config.max_objects),
            "contract": "docs/onnx.md of fastmc",
            **{k: str(v) for k, v in spec["meta"].items()}}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def run_onnx(path: str | os.PathLike[str], inputs: Mapping[str, np.ndarray], *,
             threads: int | None = None) -> dict[str, np.ndarray]:
    """Run an exported graph with ONNX Runtime on the CPU: output name -> array."""
    ort = require("onnxruntime", "export")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(inputs)), strict=True))


def onnx_parity(path: str | os.PathLike[str], module: torch.nn.Module,
                inputs: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Max |ONNX Runtime - torch| per output on ``inputs`` (integer outputs: count of
    differing entries)."""
    with torch.no_grad():
        ref = module.eval()(*inputs.values())
    got = run_onnx(path, {k: v.numpy() for k, v in inputs.items()})
    out = {}
    for (name, value), r in zip(got.items(), ref, strict=True):
        r = r.numpy()
        if np.issubdtype(r.dtype, np.integer):
            out[name] = float(np.count_nonzero(value != r))
        else:
            out[name] = float(np.max(np.abs(value.astype(np.float64) - r), initial=0.0))
    return out


def export_onnx(model: GenerativeModel | str | os.PathLike[str],
                out_path: str | os.PathLike[str], *, check_events: int = 256) -> ExportReport:
    """Export ``model`` (a model directory or a loaded model) to ``out_path`` (atomically).

    The export is checked: ONNX Runtime runs it on ``check_events`` fixed random inputs
    (seed 0) and the report gives the largest absolute difference to torch per output.
    Needs the ``export`` extra (onnx, onnxruntime).
    """
    from fastmc.io.atomic import atomic_path

    if not isinstance(model, GenerativeModel):
        model = load_model(model, device="cpu")
    model = model.to("cpu").eval()
    spec = _spec(model)
    with atomic_path(out_path) as tmp:
        _write(spec, model, tmp)
        inputs = spec.get("check_inputs", _random_inputs)(spec, check_events)
        diff = onnx_parity(tmp, spec["module"], inputs)
    return ExportReport(path=str(out_path), model=model.name, inputs=spec["inputs"],
                        outputs=spec["outputs"], not_exported=list(spec["not_exported"]),
                        max_abs_diff=diff)


def _random_inputs(spec: Mapping[str, Any], n: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {name: torch.randn(n, *shape[1:], generator=gen)
            for name, shape in spec["inputs"].items()}


def onnx_speed(model: GenerativeModel | str | os.PathLike[str], onnx_path: str | os.PathLike[str],
               *, batch_size: int = 10_000, repeats: int = 5, threads: int = 1
               ) -> dict[str, float]:
    """Events/s of the exported graph in ONNX Runtime and of the same module in torch.

    Both on the CPU with ``threads`` threads, on the same fixed inputs, best of ``repeats``.
    """
    if not isinstance(model, GenerativeModel):
        model = load_model(model, device="cpu")
    spec = _spec(model.to("cpu").eval())
    inputs = spec.get("check_inputs", _random_inputs)(spec, batch_size)
    ort = require("onnxruntime", "export")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in inputs.items()}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t_torch = _best(lambda: _torch_run(spec["module"], inputs), repeats)
        t_ort = _best(lambda: sess.run(None, feed), repeats)
    finally:
        torch.set_num_threads(before)
    return {"batch_size": batch_size, "threads": threads,
            "torch_events_per_s": batch_size / t_torch, "onnx_events_per_s": batch_size / t_ort}


def _torch_run(module: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        module(*inputs.values())


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
