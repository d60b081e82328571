"""The fast sampling path of the flow (issue 13, item 3): the split spline inverse against
zuko's, the pass-order FastInverse against zuko's flow inverse, the thread pool, the
multi-candidate rejection passes, the pairwise jet-separation check, the compile option."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.events import Events
from fastmc.models import build_model
from fastmc.models.flow import FlowModel
from modelhelpers import fitted_flow

pytest.importorskip("zuko")

TINY = {"hidden": 32, "transforms": 2, "bins": 4, "embedding": 4, "max_patterns": 16, "max_jets": 14}


@pytest.fixture(scope="module")
def coupling(real_events: Events) -> FlowModel:
    # the plain azimuth: separation by rejection, so that the passes have something to count
    return fitted_flow(real_events, {**TINY, "mode": "coupling", "sample_chunk": 64, "jet_azimuth": "reference"})


def _zuko_spline(w: torch.Tensor, h: torch.Tensor, d: torch.Tensor):
    from fastmc.models.flow.inverse import fast_rqs_class

    return fast_rqs_class()(w, h, d)


@pytest.mark.parametrize("bins", [2, 4, 8])
@pytest.mark.parametrize("fusable", [False, True])
def test_split_spline_inverse_matches_zuko_on_random_inputs(bins: int, fusable: bool) -> None:
    from zuko.transforms import MonotonicRQSTransform

    from fastmc.models.flow.inverse import rqs_inverse_split

    g = torch.Generator().manual_seed(bins)
    w, h = torch.randn(3000, bins, generator=g), torch.randn(3000, bins, generator=g)
    d = torch.randn(3000, bins - 1, generator=g)
    y = 3 * torch.randn(3000, generator=g)  # ~10% outside [-5, 5]: the identity there
    y[:4] = torch.tensor([-5.0, 5.0, -5.0001, 5.0001])
    ours = rqs_inverse_split(torch.stack([w, h], -2), d, y, fusable=fusable)
    theirs = MonotonicRQSTransform(w, h, d).inv(y)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-5)
    outside = y.abs() > 5
    assert outside.any() and torch.equal(ours[outside], y[outside])
    # and it is the inverse of the forward spline
    torch.testing.assert_close(_zuko_spline(w, h, d)(ours), y, rtol=1e-4, atol=1e-4)
    # bfloat16 parameters are read as float32 (the network's output in the fast mode)
    wh16, d16 = torch.stack([w, h], -2).bfloat16(), d.bfloat16()
    torch.testing.assert_close(
        rqs_inverse_split(wh16, d16, y), rqs_inverse_split(wh16.float(), d16.float(), y), rtol=0, atol=0
    )


@pytest.mark.parametrize("mode", ["coupling", "autoregressive", "coupling-linear", "coupling-kinematic"])
def test_fast_inverse_matches_zuko_flow_inverse(real_events: Events, mode: str) -> None:
    from fastmc.models.flow.inverse import FastInverse

    torch.manual_seed(1)
    settings = {
        "coupling-linear": {"mode": "coupling", "linear_mixing": True},
        "coupling-kinematic": {"mode": "coupling", "coupling_split": "kinematic"},
    }.get(mode, {"mode": mode})
    model = build_model("flow", {**TINY, **settings})
    model.fit_data(RawBatch.from_events(real_events))
    for p in model.flow.parameters():  # weights away from the initialisation
        p.data += 0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()))
    gen = torch.Generator().manual_seed(5)
    index = model.patterns.sample(300, generator=gen)
    ctx = model.context(model._slot_types(index), index).detach()
    z = torch.randn(300, model.layout.dim, generator=gen)
    with torch.no_grad():
        theirs = model.flow(ctx).transform.inv(z)
        for chunk, workers in [(1024, 1), (64, 1), (64, 2)]:
            ours = FastInverse(model.flow)(ctx, z, chunk=chunk, workers=workers)
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_same_seed_same_events_at_any_thread_count(coupling: FlowModel) -> None:
    """Each chunk is computed whole by one thread, so the pool does not change the events."""
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(coupling.sample(300, generator=torch.Generator().manual_seed(7)))
            assert torch.get_num_threads() == threads  # sample restores the caller's setting
    finally:
        torch.set_num_threads(before)
    for other in runs[1:]:
        for f in ("types", "p4", "met", "met_phi"):
            assert torch.equal(getattr(other, f), getattr(runs[0], f)), f
    other = coupling.sample(300, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other.p4, runs[0].p4)


def _compile_config_copy(model: FlowModel, monkeypatch) -> FlowModel:
    """``model`` with ``sample_compile``, its spline "compiled" as the eager fusable one."""
    import functools

    from fastmc.models.flow import inverse

    monkeypatch.setattr(
        inverse, "_compiled_spline", lambda: functools.partial(inverse.rqs_inverse_split, fusable=True)
    )
    out = build_model("flow", {**TINY, "mode": "coupling", "sample_chunk": 64, "sample_compile": True,
                               "jet_azimuth": "reference"})
    out.load_state_dict(model.state_dict())
    out.load_extra_tensors(model.extra_tensors())
    return out


def test_candidate_passes_are_counted_as_sequential_rejection(coupling: FlowModel, monkeypatch) -> None:
    """With sample_compile a pass is rounded up to whole chunks (at most 1.5 candidates per
    event); the statistics count the candidates up to the accepted one, as one-at-a-time
    rejection would."""
    model = _compile_config_copy(coupling, monkeypatch)
    gen = torch.Generator().manual_seed(3)
    index = model.patterns.sample(40, generator=gen)
    state = gen.get_state()
    got, pick, tries = model._candidates(index, 1000, gen, 0)
    # the same pass by hand: 60 candidates (64 would be more than 1.5 x 40), events 0-19 twice
    gen.set_state(state)
    cand = torch.cat([index, index[:20]])
    raw, ok = model._draw(cand, gen, 0)
    first_ok = ok[:40]
    second_ok = torch.cat([ok[40:], torch.zeros(20, dtype=torch.bool)])
    assert torch.equal(got, first_ok | second_ok)
    twice = torch.arange(40) < 20
    expect = torch.where(first_ok, 1, torch.where(second_ok, 2, torch.where(twice, 2, 1)))
    assert tries == int(expect.sum())
    rows = torch.where(first_ok, torch.arange(40), torch.arange(40) + 40)[got]
    assert torch.equal(pick.p4, raw.p4[rows]) and len(pick) == int(got.sum())
    assert bool(second_ok[~first_ok].any())  # some events were rescued by their 2nd candidate
    # a pass of 64 events is exactly one chunk: one candidate each
    gen.set_state(state)
    assert coupling._candidates(index.repeat(2)[:64], 1000, gen, 0)[2] == 64
    # whole-sample bookkeeping and physics: drawn = accepted + rejected
    for m in (model, coupling):
        before = m.generation_stats()
        ev = m.sample(500, generator=gen)
        after = m.generation_stats()
        drawn, rejected = after["drawn"] - before["drawn"], after["rejected"] - before["rejected"]
        assert drawn == 500 + rejected and 0 < rejected < drawn
        assert len(ev) == 500 and torch.isfinite(ev.p4).all()


def test_without_compile_the_passes_draw_one_candidate_per_event(coupling: FlowModel) -> None:
    """The seed-to-events map of the one-at-a-time sampler: pass after pass, the rejected
    events' kinematics drawn again (same random numbers as drawing them by hand)."""
    gen = torch.Generator().manual_seed(11)
    out = coupling.sample(150, generator=gen)
    gen = torch.Generator().manual_seed(11)
    index = coupling.patterns.sample(150, generator=gen)
    raw, ok = coupling._draw(index, gen, 0)
    todo = (~ok).nonzero()[:, 0]
    while len(todo):
        again, ok = coupling._draw(index[todo], gen, 0)
        raw.p4[todo[ok]] = again.p4[ok]
        todo = todo[~ok]
    assert torch.equal(out.p4, raw.p4)


@pytest.mark.parametrize("threads", [1, 2])
def test_piece_size_does_not_change_the_events(real_events: Events, threads: int) -> None:
    """Decoding works event by event: pieces of one chunk or of the whole call give the same
    events (allowed azimuths, the default decoding with its per-jet loops), at any thread count."""
    model = fitted_flow(real_events, {**TINY, "mode": "coupling", "sample_chunk": 64})
    before = torch.get_num_threads()
    runs, pieces = [], []
    try:
        torch.set_num_threads(threads)
        for piece in (64, 8192, 100):  # 100: rounded down to one chunk
            model.config = dataclasses.replace(model.config, decode_chunk=piece)
            pieces.append(model._piece(400, threads))
            runs.append(model.sample(400, generator=torch.Generator().manual_seed(3)))
    finally:
        torch.set_num_threads(before)
    assert model._piece(400, 1) == 64  # decode_chunk 100 < two chunks of 64
    assert pieces == [64, 448 if threads == 1 else 256, 64]  # the runs did decode differently
    for other in runs[1:]:
        for f in ("types", "p4", "met", "met_phi"):
            assert torch.equal(getattr(other, f), getattr(runs[0], f)), f


def test_pieces_are_whole_chunks_split_evenly_between_workers(coupling: FlowModel) -> None:
    model = coupling
    saved = model.config
    try:
        model.config = dataclasses.replace(saved, sample_chunk=1024, decode_chunk=8192)
        assert model._piece(10240, 2) == 5120  # the 10 chunks, 5 per worker
        assert model._piece(10000, 2) == 5120
        assert model._piece(10240, 1) == 8192  # capped at decode_chunk
        assert model._piece(1_000_000, 2) == 8192
        assert model._piece(300, 2) == 1024  # at least one chunk
        assert model._piece(0, 2) == 1024
        model.config = dataclasses.replace(saved, sample_chunk=1024, decode_chunk=1)
        assert model._piece(10240, 2) == 1024
    finally:
        model.config = saved


def test_zero_events(coupling: FlowModel) -> None:
    raw = coupling.sample(0, generator=torch.Generator().manual_seed(0))
    assert len(raw) == 0 and raw.p4.shape[1:] == (coupling.config.max_objects, 4)


def test_pairwise_separation_equals_the_full_pair_matrix() -> None:
    from fastmc.models.flow.separation import close_jet_pairs, jets_separated

    g = torch.Generator().manual_seed(0)
    b, s, j = 4000, 8, 6
    eta = (2 * torch.rand(b, s, generator=g) - 1).float()
    phi = (2 * math.pi * torch.rand(b, s, generator=g) - math.pi).float()
    phi[:, 1] = torch.where(phi[:, 0] > 0, phi[:, 0] - 2 * math.pi + 0.1, phi[:, 1])  # across +-pi
    present = torch.rand(b, s, generator=g) < 0.8
    for radius in (0.0, 0.4, 1.5):
        full = ~close_jet_pairs(eta, phi, present, n_jets=j, radius=radius).flatten(1).any(1)
        fast = jets_separated(eta, phi, present, n_jets=j, radius=radius)
        assert torch.equal(fast, full)
    assert 0 < int(fast.sum()) < b
    assert jets_separated(eta, phi, present, n_jets=1, radius=9.0).all()


def test_a_failing_compiler_falls_back_with_a_warning(coupling: FlowModel, monkeypatch) -> None:
    from fastmc.models.flow import inverse

    def broken() -> object:
        def fail(*args: object, **kwargs: object) -> torch.Tensor:
            raise RuntimeError("no C++ compiler")

        return fail

    model = _compile_config_copy(coupling, monkeypatch)
    ref = model.sample(200, generator=torch.Generator().manual_seed(2))  # eager-"compiled" spline
    monkeypatch.setattr(inverse, "_compiled_spline", broken)
    model._inverse_cache = None  # a new FastInverse: compiles again (and fails)
    with pytest.warns(UserWarning, match="torch.compile of the spline inverse failed"):
        out = model.sample(200, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.p4, ref.p4, rtol=1e-5, atol=1e-4)  # float rounding


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile
def test_compiled_sampling_matches_eager(coupling: FlowModel) -> None:
    """sample_compile (torch.compile of the spline, several seconds): the same events up to
    float rounding; a rejection decision may flip at the radius, so compare the inverse."""
    from fastmc.models.flow.inverse import FastInverse

    gen = torch.Generator().manual_seed(4)
    index = coupling.patterns.sample(256, generator=gen)
    ctx = coupling.context(coupling._slot_types(index), index).detach()
    z = torch.randn(256, coupling.layout.dim, generator=gen)
    eager = FastInverse(coupling.flow)(ctx, z, chunk=64)
    compiled = FastInverse(coupling.flow, compile=True)(ctx, z, chunk=64, workers=2)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    ev = np.asarray(eager)
    assert np.isfinite(ev).all()


def test_compiled_kernels_release_the_gil() -> None:
    """The torch this project pins binds compiled CPU kernels the known way, and the binding
    is changed to run them without the interpreter lock (test_compiled_sampling_matches_eager
    runs such kernels on two threads at once)."""
    from torch._inductor.codecache import CppPythonBindingsCodeCache

    from fastmc.models.flow.inverse import release_gil_in_compiled_kernels

    assert release_gil_in_compiled_kernels()
    call = CppPythonBindingsCodeCache.call_entry_function
    assert "Py_BEGIN_ALLOW_THREADS" in call and call.format("a, b").count("std::make_tuple(a, b)") == 1
    assert release_gil_in_compiled_kernels()  # idempotent


def test_kinematic_split_draws_angles_given_momenta_then_the_reverse() -> None:
    """coupling_split "kinematic": transform 0 draws every pT and mass parameter and log MET
    first (context only) and every eta, phi and MET phi given them, transform 2 the reverse;
    transforms 1 and 3 are the random split of "features", transform for transform."""
    from fastmc.models.flow.inverse import build_spline_flow

    slots = 5
    d = 4 * slots + 2
    kw = dict(passes=2, transforms=4, hidden=8, layers=1, bins=4, bound=5.0, slope=1e-3)
    kinematic = build_spline_flow(d, 3, split="kinematic", **kw)
    plain = build_spline_flow(d, 3, **kw)
    momenta = torch.zeros(d, dtype=torch.bool)
    momenta[0 : 4 * slots : 4] = momenta[3 : 4 * slots : 4] = True
    momenta[4 * slots] = True  # log MET
    pass_of = [t.order for t in kinematic.transform.transforms]
    assert torch.equal(pass_of[0], (~momenta).long())  # 0 = drawn first
    assert torch.equal(pass_of[2], momenta.long())
    for i in (1, 3):
        assert torch.equal(pass_of[i], plain.transform.transforms[i].order)
    with pytest.raises(ValueError, match="split"):
        build_spline_flow(d, 3, split="objects", **kw)
