"""Encoding: round trips on the real files, both kinds, standardisation, decode options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.io import read_events
from fastmc.models.vae.encoding import (
    EncodedBatch,
    Encoding,
    EncodingConfig,
    restore_order,
    wrap_phi,
)


@pytest.fixture(scope="module")
def real_events(real_files):
    return read_events(real_files)


@pytest.fixture(scope="module")
def real_raw(real_events) -> RawBatch:
    return RawBatch.from_events(real_events)


def _decode(enc: Encoding, eb: EncodedBatch, **kw) -> RawBatch:
    return enc.decode(types=eb.types, features=eb.features, met=eb.met, **kw)


def _assert_same(out: RawBatch, raw: RawBatch, *, rtol_e: float = 1e-6) -> None:
    assert torch.equal(out.types, raw.types)
    # E and pT: relative; eta, phi: absolute (float32 rounding of log10 / 10**x)
    torch.testing.assert_close(out.p4[..., 0], raw.p4[..., 0], rtol=rtol_e, atol=0)
    torch.testing.assert_close(out.p4[..., 1], raw.p4[..., 1], rtol=2e-6, atol=0)
    torch.testing.assert_close(out.p4[..., 2:], raw.p4[..., 2:], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.met, raw.met, rtol=2e-6, atol=0)
    torch.testing.assert_close(out.met_phi, raw.met_phi, rtol=0, atol=1e-6)


@pytest.mark.parametrize("standardize", [False, True])
def test_round_trip_thesis(real_events, real_raw: RawBatch, standardize: bool) -> None:
    enc = Encoding(EncodingConfig(kind="thesis", standardize=standardize)).fit(real_raw)
    eb = enc.encode(real_raw)
    assert eb.features.shape == (len(real_raw), 19, 4) and eb.features.dtype == torch.float32
    assert eb.met.shape == (len(real_raw), 2) and eb.types.dtype == torch.int64
    pad = eb.types == 0
    assert pad.any() and (eb.features[pad] == 0).all()
    if not standardize:
        real = ~pad
        torch.testing.assert_close(eb.features[..., 1][real], torch.log10(real_raw.p4[..., 1][real]))
        torch.testing.assert_close(eb.met[:, 0], torch.log10(real_raw.met))
    else:
        f = eb.features[~pad]
        assert f.mean(0).abs().max() < 1e-4 and (f.std(0) - 1).abs().max() < 1e-3
    out = _decode(enc, eb, weight=real_raw.weight, process=real_raw.process)
    _assert_same(out, real_raw, rtol_e=2e-6 if not standardize else 4e-6)
    assert torch.equal(out.process, real_raw.process)
    # and back to Events: the same events as read (float32 tolerance), in Dark Machines order
    ev = out.to_events(process_names=real_events.process_names)
    assert ev.sorted().equals(ev)
    ev.event_id = real_events.event_id
    assert ev.equals(real_events, rtol=4e-6, atol=1e-6)


@pytest.mark.parametrize("standardize", [False, True])
def test_round_trip_physics(real_raw: RawBatch, standardize: bool) -> None:
    enc = Encoding(EncodingConfig(kind="physics", standardize=standardize)).fit(real_raw)
    out = _decode(enc, enc.encode(real_raw))
    # E is derived: equal to the input within the files' 6-digit rounding for light objects
    _assert_same(out, real_raw, rtol_e=2e-5)
    e, pt, eta = out.p4[..., 0].double(), out.p4[..., 1].double(), out.p4[..., 2].double()
    real = out.types != 0
    assert (e[real] >= (pt * torch.cosh(eta))[real] * (1 - 1e-6)).all()


def test_decode_from_logits_probabilities_and_sampling(real_raw: RawBatch) -> None:
    raw = RawBatch(**{k: v[:500] for k, v in vars(real_raw).items()})
    enc = Encoding()
    eb = enc.encode(raw)
    onehot = eb.one_hot()
    logits = onehot * 20 - 10
    for types in (logits, onehot):
        out = enc.decode(types=types, features=eb.features, met=eb.met)
        assert torch.equal(out.types, raw.types)
    g = torch.Generator().manual_seed(0)
    for types in (logits, onehot):  # near-certain logits and exact probabilities
        out = enc.decode(
            types=types, features=eb.features, met=eb.met, sample_types=True, generator=g
        )
        assert torch.equal(out.types, raw.types)
    # sampling from uniform logits draws all classes, reproducibly for a seed
    flat = torch.zeros(500, 19, 8)
    a = enc.decode(types=flat, features=eb.features, met=eb.met, sample_types=True,
                   generator=torch.Generator().manual_seed(1)).types
    b = enc.decode(types=flat, features=eb.features, met=eb.met, sample_types=True,
                   generator=torch.Generator().manual_seed(1)).types
    assert torch.equal(a, b) and len(torch.unique(a)) == 8


def test_decode_wraps_phi_zeroes_padding_and_restores_order() -> None:
    enc = Encoding(EncodingConfig(max_objects=4))
    # slot order deliberately wrong: photon, muon, jet (low pT), b-jet (high pT)
    types = torch.tensor([[7, 5, 1, 2], [0, 1, 0, 3]])
    feats = torch.tensor(
        [
            [[2.0, 1.5, 0.1, 4.0], [2.0, 1.7, 0.2, -4.0], [2.0, 1.6, 0.3, 1.0], [2.0, 1.9, 0.4, 7.0]],
            [[9.0, 9.0, 9.0, 9.0], [2.0, 1.6, 0.3, math.pi], [3.0, 3.0, 3.0, 3.0], [2.0, 1.2, 0.0, 0]],
        ]
    )
    met = torch.tensor([[2.5, 4.0], [2.4, -math.pi]])
    out = enc.decode(types=types, features=feats, met=met)
    assert out.types.tolist() == [[2, 1, 5, 7], [1, 3, 0, 0]]
    assert (out.p4[1, 2:] == 0).all()  # padding zeroed, moved last
    phi = out.p4[..., 3]
    assert (phi > -math.pi).all() and (phi <= math.pi).all()
    torch.testing.assert_close(out.p4[0, 0, 3], torch.tensor(7.0 - 2 * math.pi))
    torch.testing.assert_close(out.met_phi, torch.tensor([4.0 - 2 * math.pi, math.pi]))
    torch.testing.assert_close(out.p4[0, :, 1], 10 ** torch.tensor([1.9, 1.6, 1.7, 1.5]))
    torch.testing.assert_close(out.met, 10 ** torch.tensor([2.5, 2.4]))


def test_restore_order_matches_events_sorted(real_raw: RawBatch, rng) -> None:
    raw = RawBatch(**{k: v[:300] for k, v in vars(real_raw).items()})
    perm = torch.from_numpy(np.argsort(rng.random((300, 19)), axis=1))
    types = torch.gather(raw.types, 1, perm)
    p4 = torch.gather(raw.p4, 1, perm[..., None].expand(-1, -1, 4))
    t2, p2 = restore_order(types, p4)
    assert torch.equal(t2, raw.types) and torch.equal(p2, raw.p4)


def test_wrap_phi() -> None:
    x = torch.tensor([-math.pi, math.pi, 3 * math.pi, -3 * math.pi + 1e-3, 0.5], dtype=torch.float64)
    y = wrap_phi(x)
    assert (y > -math.pi).all() and (y <= math.pi).all()
    torch.testing.assert_close(torch.cos(y), torch.cos(x))


def test_dtype_and_padding_of_narrow_input(real_raw: RawBatch) -> None:
    raw = RawBatch(**{k: v[:50] for k, v in vars(real_raw).items()})
    raw64 = RawBatch(
        types=raw.types[:, :12], p4=raw.p4[:, :12].double(), met=raw.met.double(),
        met_phi=raw.met_phi.double(), weight=raw.weight.double(), process=raw.process,
    )
    assert (raw.types[:, 12:] == 0).all()
    eb = Encoding().encode(raw64)
    assert eb.features.dtype == torch.float64 and eb.features.shape == (50, 19, 4)
    assert (eb.features[:, 12:] == 0).all()
    narrow = Encoding(EncodingConfig(max_objects=3))
    with pytest.raises(ValueError, match="max_objects=3"):
        narrow.encode(raw)


def test_state_and_config_round_trip(real_raw: RawBatch) -> None:
    cfg = EncodingConfig(kind="physics", max_objects=19, standardize=True)
    enc = Encoding(cfg).fit(real_raw)
    data = json.loads(json.dumps(enc.config_dict()))
    enc2 = Encoding.from_config_dict(data)
    assert enc2.config == cfg and not enc2.is_fitted
    with pytest.raises(RuntimeError, match="fit"):
        enc2.encode(real_raw)
    enc2.load_state_dict(enc.state_dict())
    torch.testing.assert_close(enc2.encode(real_raw).features, enc.encode(real_raw).features)
    # fitting on an iterable of batches gives the same statistics
    halves = [RawBatch(**{k: v[s] for k, v in vars(real_raw).items()})
              for s in (slice(0, 7000), slice(7000, None))]
    enc3 = Encoding(cfg).fit(iter(halves))
    for key, val in enc.state_dict().items():
        torch.testing.assert_close(enc3.state_dict()[key], val)
    assert Encoding().state_dict() == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "polar"}, "kind"),
        ({"max_objects": 0}, "max_objects"),
        ({"max_objects": 2.5}, "max_objects"),
        ({"standardize": "yes"}, "standardize"),
    ],
)
def test_config_validation(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        EncodingConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown"):
        EncodingConfig.from_dict({"kind": "thesis", "k": 3})
    with pytest.raises(TypeError):
        EncodingConfig("thesis")  # keyword-only
