"""EventLoader: balance, proportional modes, determinism, epochs, shard disjointness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datahelpers import event_keys
from torch.utils.data import DataLoader

from fastmc.data.batch import RawBatch
from fastmc.data.loader import EventLoader
from fastmc.data.store import open_store
from fastmc.models.vae.encoding import Encoding


def _batches(loader: EventLoader) -> list[RawBatch]:
    return list(loader)


def _same(a: list[RawBatch], b: list[RawBatch]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.p4, y.p4) and torch.equal(x.process, y.process) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("batch_size", [1000, 1003, 17, 5])
def test_balanced_every_process_floor_or_ceil(store_all: Path, batch_size: int) -> None:
    store = open_store(store_all)
    loader = EventLoader(store, batch_size=batch_size, batches_per_epoch=40, seed=1)
    f = len(store.processes)  # 17, incl. processes with 1..8 training events (circular reuse)
    assert loader.process_indices == tuple(range(f))
    lo, hi = batch_size // f, -(-batch_size // f)
    totals = np.zeros(f, np.int64)
    for batch in loader:
        assert len(batch) == batch_size
        n = torch.bincount(batch.process, minlength=f).numpy()
        assert n.min() >= lo and n.max() <= hi
        totals += n
        assert batch.types.dtype == torch.int64 and batch.p4.shape == (batch_size, 19, 4)
        # interleaved: the first min(B, F) events come one from each process in turn
        first = batch.process[: min(batch_size, f)].tolist()
        assert first == sorted(set(batch.process.tolist()))
    assert totals.max() - totals.min() <= 1  # the extra events rotate fairly


def test_balanced_batches_hold_real_events(store_all: Path) -> None:
    store = open_store(store_all)
    loader = EventLoader(store, batch_size=170, batches_per_epoch=3, interleave=False)
    allowed = {}
    for i, proc in enumerate(store.processes):
        ev = store.events("train", proc)
        allowed[i] = {
            (m.tobytes() + p.tobytes(), float(np.float32(w)))
            for m, p, w in zip(ev.met, ev.p4, ev.weight, strict=True)
        }
    for batch in loader:
        for i in range(len(batch)):
            key = batch.met[i].numpy().tobytes() + batch.p4[i].numpy().tobytes()
            assert (key, float(batch.weight[i])) in allowed[int(batch.process[i])]


def test_circular_reuse_of_a_small_process(store_all: Path) -> None:
    store = open_store(store_all)
    gam = store.process_index("gam_jets")
    assert store.n_events("train", gam) == 1
    loader = EventLoader(store, batch_size=17 * 5, batches_per_epoch=2, interleave=False)
    for batch in loader:
        sel = batch.process == gam
        assert sel.sum() == 5 and (batch.p4[sel] == batch.p4[sel][0]).all()


def test_deterministic_and_epochs(store_signals: Path) -> None:
    kw = {"batch_size": 500, "batches_per_epoch": 6}
    a = _batches(EventLoader(store_signals, seed=3, **kw))
    b = _batches(EventLoader(store_signals, seed=3, **kw))
    c = _batches(EventLoader(store_signals, seed=4, **kw))
    assert _same(a, b) and not _same(a, c)
    loader = EventLoader(store_signals, seed=3, **kw)
    loader.set_epoch(1)
    e1 = _batches(loader)
    assert not _same(a, e1)
    loader.set_epoch(0)
    assert _same(a, _batches(loader))
    # balanced epochs continue each process's stream where the previous epoch stopped
    long = _batches(EventLoader(store_signals, seed=3, batch_size=500, batches_per_epoch=12))
    for p in range(5):
        seq = [k for bt in a + e1 for k, q in zip(event_keys(bt), bt.process, strict=True) if q == p]
        ref = [k for bt in long for k, q in zip(event_keys(bt), bt.process, strict=True) if q == p]
        assert seq == ref


def test_consecutive_batches_continue_each_process(store_signals: Path) -> None:
    store = open_store(store_signals)
    p = 2
    loader = EventLoader(store, batch_size=5 * 300, batches_per_epoch=8, interleave=False)
    keys = [k for bt in loader for k, q in zip(event_keys(bt), bt.process, strict=True) if q == p]
    n = store.n_events("train", p)
    assert len(keys) == 2400 > n  # wrapped around once: the stream restarts at its beginning
    assert len(set(keys[:n])) == n  # every event once before any repeats
    assert keys[n:] == keys[: 2400 - n]  # then the same sequence again (circular)


@pytest.mark.parametrize("mode", ["count", "weight"])
def test_proportional_modes(store_signals: Path, mode: str) -> None:
    store = open_store(store_signals)
    loader = EventLoader(store, batch_size=2000, batches_per_epoch=30, mode=mode, seed=0)
    if mode == "count":
        want = np.array([store.n_events("train", p) for p in range(5)], float)
    else:
        want = np.array([store.weight_sum("train", p) for p in range(5)])
    want /= want.sum()
    totals = np.zeros(5)
    for batch in loader:
        assert len(batch) == 2000
        totals += torch.bincount(batch.process, minlength=5).numpy()
    frac = totals / totals.sum()
    # multinomial: within 5 standard deviations
    sigma = np.sqrt(want * (1 - want) / totals.sum())
    assert np.all(np.abs(frac - want) <= 5 * sigma + 1e-12)
    assert not np.allclose(want, 0.2)


def test_rank_disjointness(store_signals: Path) -> None:
    store = open_store(store_signals)
    seen = []
    for rank in range(3):
        loader = EventLoader(store, batch_size=500, batches_per_epoch=12, rank=rank, world_size=3)
        keys = {k for bt in loader for k in event_keys(bt)}
        seen.append(keys)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not seen[i] & seen[j]
    # 12 batches x 100 events per process per rank exceed every part: each rank saw its part whole
    assert sum(len(s) for s in seen) == store.n_events("train")


def test_worker_disjointness_and_determinism(store_signals: Path) -> None:
    loader = EventLoader(store_signals, batch_size=400, batches_per_epoch=10, seed=2)

    def run() -> list[RawBatch]:
        dl = DataLoader(loader, batch_size=None, num_workers=2, multiprocessing_context="fork")
        return list(dl)

    first = run()
    assert len(first) == 10
    assert _same(first, run())
    w0 = {k for bt in first[0::2] for k in event_keys(bt)}
    w1 = {k for bt in first[1::2] for k in event_keys(bt)}
    assert w0 and w1 and not w0 & w1
    # the same as two in-process shards of rank 0
    assert not _same(first, _batches(loader))


def test_too_few_events_for_the_shards(store_all: Path) -> None:
    loader = EventLoader(store_all, batch_size=100, batches_per_epoch=1, rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"gam_jets.*fewer events"):
        next(iter(loader))
    ok = EventLoader(
        store_all, batch_size=100, batches_per_epoch=1, rank=1, world_size=2,
        processes=["njets", "ttbar", "monotop_200_A"],
    )
    assert torch.unique(next(iter(ok)).process).tolist() == [3, 4, 9]


def test_val_split_skips_empty_processes(store_all: Path) -> None:
    store = open_store(store_all)
    loader = EventLoader(store, "val", batch_size=100, batches_per_epoch=1)
    used = [store.processes[i] for i in loader.process_indices]
    assert "gam_jets" not in used and "njets" in used
    assert len(next(iter(loader))) == 100


def test_encoded_stream(store_signals: Path) -> None:
    loader = EventLoader(store_signals, batch_size=256, batches_per_epoch=2, dtype=torch.float64)
    enc = Encoding()
    for batch in loader:
        eb = enc.encode(batch)
        assert eb.features.dtype == torch.float64 and torch.isfinite(eb.features).all()
        out = enc.decode(types=eb.types, features=eb.features, met=eb.met)
        torch.testing.assert_close(out.p4, batch.p4, rtol=1e-9, atol=1e-9)


def test_bad_arguments(store_signals: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        EventLoader(store_signals, mode="uniform")
    with pytest.raises(ValueError, match="split"):
        EventLoader(store_signals, "training")
    with pytest.raises(ValueError, match="batch_size"):
        EventLoader(store_signals, batch_size=0)
    with pytest.raises(ValueError, match="unknown process"):
        EventLoader(store_signals, processes=["ttbar"])


def test_rank_from_torch_distributed(store_signals: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    auto = EventLoader(store_signals, batch_size=100, batches_per_epoch=3)
    explicit = EventLoader(store_signals, batch_size=100, batches_per_epoch=3, rank=1, world_size=2)
    assert auto.shard() == (1, 2)
    assert _same(_batches(auto), _batches(explicit))
    with pytest.raises(ValueError, match="rank 2"):
        EventLoader(store_signals, rank=2, world_size=2).shard()


def test_streams_by_file(store_all: Path, real_files: list[Path]) -> None:
    store = open_store(store_all)
    loader = EventLoader(store, batch_size=600, batches_per_epoch=6, streams="file", seed=5)
    assert loader.stream_names == tuple(p.name for p in real_files)
    assert loader.process_indices == tuple(range(len(store.processes)))
    allowed = {}
    for i, proc in enumerate(store.processes):
        ev = store.events("train", proc)
        allowed[i] = {m.tobytes() + p.tobytes() for m, p in zip(ev.met, ev.p4, strict=True)}
    background = {store.process_index(p) for p in store.sources[0]["events_by_process"]}
    seen_bkg = set()
    # two epochs (1200 background events, more than the file's train split) so that the
    # circular stream covers the whole file whatever the seeded offset
    batches = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches += list(loader)
    for batch in batches:
        proc = batch.process.numpy()
        # 6 files: every file gives 100 events per batch, the background file its own mixture
        assert np.isin(proc, sorted(background)).sum() == 100
        for sig in set(range(len(store.processes))) - background:
            assert (proc == sig).sum() == 100
        seen_bkg |= set(proc[np.isin(proc, sorted(background))].tolist())
        for i in range(len(batch)):
            key = batch.met[i].numpy().tobytes() + batch.p4[i].numpy().tobytes()
            assert key in allowed[int(proc[i])]
    assert len(seen_bkg) > 3  # njets, ttbar, w_jets, z_jets, ... in their natural proportions
    # ranks read disjoint parts of every file
    keys = [
        {k for bt in EventLoader(store, batch_size=600, batches_per_epoch=3, streams="file",
                                 rank=r, world_size=2, processes=["njets", "ttbar", "monotop_200_A"])
         for k in event_keys(bt)}
        for r in range(2)
    ]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    with pytest.raises(ValueError, match="streams='process'"):
        EventLoader(store, mode="weight", streams="file")
    with pytest.raises(ValueError, match="streams"):
        EventLoader(store, streams="files")


def test_streams_by_file_when_processes_span_files(real_files: list[Path], tmp_path: Path) -> None:
    from fastmc.data.store import prepare
    from fastmc.io import read_events

    lines = real_files[0].read_bytes().splitlines(keepends=True)
    halves = [tmp_path / "a.csv", tmp_path / "b.csv"]
    halves[0].write_bytes(b"".join(lines[:600]))
    halves[1].write_bytes(b"".join(lines[600:]))
    store = open_store(prepare(halves, tmp_path / "s", val=0.2, test=0.0))
    loader = EventLoader(store, batch_size=400, batches_per_epoch=4, streams="file",
                         interleave=False)
    assert loader.stream_names == ("a.csv", "b.csv")
    own = []
    for path in halves:
        ev = read_events(path)
        own.append({
            m.tobytes() + p.tobytes(): proc
            for m, p, proc in zip(ev.met, ev.p4, ev.process, strict=True)
        })
    for batch in loader:
        for half, rows in ((0, range(200)), (1, range(200, 400))):
            for i in rows:
                key = batch.met[i].numpy().tobytes() + batch.p4[i].numpy().tobytes()
                assert own[half][key] == store.processes[int(batch.process[i])]
