"""Fast sampling direction of zuko masked-autoregressive spline flows (generation).

zuko's ``flow(context).transform.inv(z)`` runs every transform's whole masked network once per
pass and builds every feature's spline in every pass.  :class:`FastInverse` precomputes, for each
transform and each pass (block of features that are inverted together), the slices of the
masked weights that the block's spline parameters actually depend on (the masks of zuko's
``MaskedMLP`` make many hidden units irrelevant to a block: in a coupling transform the first
half of the features depends on a network half as wide), folds the masks into the weights, and
inverts the rational-quadratic splines with one fused routine (:func:`rqs_inverse`) instead of
zuko's generic transform objects (whose softmax over 8 bins dominated the time): the spline's
parameters come out of the network already split (widths and heights [N, F, 2, K], derivatives
[N, F, K - 1], contiguous), and only the two knots of each element's bin are normalised.
``compile=True`` fuses the spline into one loop with ``torch.compile``; :func:`map_chunks`
runs chunks on a thread pool (one torch thread per worker; see docs/benchmarks.md for why not
OpenMP's intra-op threads on a shared machine).

``matmul_dtype=torch.bfloat16`` runs the matrix products in bfloat16 (4x faster on CPUs with
AVX-512 BF16); the splines are still inverted in float32.  It changes the spline parameters by
about 0.4% (bfloat16 rounding), so the sample is drawn from a slightly perturbed flow: its
fidelity is measured, not assumed (docs/results.md).

Shapes: context float32 [B, C], z float32 [B, D]; the result is x float32 [B, D].
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastmc.models.flow.symmetry import FEATURES_PER_SLOT, angle_columns

__all__ = [
    "FastInverse",
    "build_spline_flow",
    "fast_rqs_class",
    "linear_mixing_matrix",
    "map_chunks",
    "rqs_inverse",
    "rqs_inverse_split",
    "single_threaded",
]


def rqs_inverse(
    params: torch.Tensor, y: torch.Tensor, bins: int, *, bound: float = 5.0, slope: float = 1e-3
) -> torch.Tensor:
    """Inverse of zuko's ``MonotonicRQSTransform`` (same parameterisation), fused.

    ``params`` float [..., 3 bins - 1] (unconstrained widths, heights, inner knot derivatives,
    as zuko's networks output them), ``y`` float [...]; returns x float [...].  Outside
    ``[-bound, bound]`` the spline is the identity.  Agrees with zuko's inverse to float32
    rounding (the root of the quadratic is taken in the same numerically stable form).
    """
    wh = params[..., : 2 * bins].unflatten(-1, (2, bins)).contiguous()
    d = params[..., 2 * bins :].contiguous()
    return rqs_inverse_split(wh, d, y, bound=bound, slope=slope)


def _soft_exp(v: torch.Tensor, factor: float) -> torch.Tensor:
    """``exp(v / (1 + |v| factor))`` (zuko's soft clipping, then exp), on a new tensor."""
    return (v / v.abs().mul_(factor).add_(1)).exp_()


def _cumsum_unrolled(e: torch.Tensor) -> torch.Tensor:
    """``e.cumsum(-1)`` as a chain of additions (inductor fuses it; its cumsum is a library call)."""
    parts = [e[..., 0]]
    for j in range(1, e.shape[-1]):
        parts.append(parts[-1] + e[..., j])
    return torch.stack(parts, -1)


def rqs_inverse_split(
    wh: torch.Tensor,
    d: torch.Tensor,
    y: torch.Tensor,
    *,
    bound: float = 5.0,
    slope: float = 1e-3,
    fusable: bool = False,
) -> torch.Tensor:
    """:func:`rqs_inverse` with the parameters split: the work horse of :class:`FastInverse`.

    ``wh`` float [..., 2, K] (unconstrained widths, then heights; float32 or bfloat16, the
    arithmetic is float32), ``d`` float [..., K - 1]
    (unconstrained inner derivatives), ``y`` float [...]; returns x float [...] (in the
    flow: [N, F], events times the features of one pass).

    Few passes over the [N, F, 2, K] tensor (soft clip, exp, cumulative sum, one comparison
    for the bin search); the knots are normalised and the derivatives exponentiated only at
    the two ends of each element's bin (gathered first), so the elementwise work is mostly
    on [N, F] tensors.  Same arithmetic as zuko's up to float rounding: the bin search
    compares the unnormalised cumulative heights with ``(y + bound) / (2 bound)`` times their
    total, the knots are ``2 bound cumsum / total - bound``.  ``fusable=True`` writes the
    cumulative sum as additions (for ``torch.compile``, whose own cumsum is a library call).
    """
    k_bins = wh.shape[-1]
    scale = -math.log(slope)
    wh, d = wh.float(), d.float()  # bfloat16 network outputs: the spline runs in float32
    e = _soft_exp(wh, 2 / scale)
    cs = _cumsum_unrolled(e) if fusable else e.cumsum(-1)  # [..., 2, K] unnormalised knots 1..K
    total = cs[..., k_bins - 1 :]  # [N, F, 2, 1]
    threshold = (y + bound) * (total[..., 1, 0] * (1 / (2 * bound)))
    # bin index 0..K-1: knots below y (the last knot is bound: never below an inside y)
    k = (cs[..., 1, : k_bins - 1] < threshold[..., None]).sum(-1)
    first = k == 0
    km = (k - 1).clamp_min(0)
    factor = (2 * bound) / total
    both = (*k.shape, 2, 1)
    hi = (cs.gather(-1, k[..., None, None].expand(both)) * factor - bound).squeeze(-1)
    lo = (cs.gather(-1, km[..., None, None].expand(both)) * factor - bound).squeeze(-1)
    lo = torch.where(first[..., None], -bound, lo)
    x0, y0 = lo.unbind(-1)
    x1, y1 = hi.unbind(-1)
    d0 = torch.where(first, 1.0, _soft_exp(d.gather(-1, km[..., None]).squeeze(-1), 1 / scale))
    d1 = d.gather(-1, k.clamp_max(k_bins - 2)[..., None]).squeeze(-1)
    d1 = torch.where(k == k_bins - 1, 1.0, _soft_exp(d1, 1 / scale))
    inside = (y > -bound) & (y <= bound)
    dy = y1 - y0
    dx = x1 - x0
    s = dy / dx
    yr = torch.where(inside, y - y0, 0.0)
    t = d0 + d1 - 2 * s
    a = dy * (s - d0) + yr * t
    b = dy * d0 - yr * t
    c = -s * yr
    z = 2 * c / (-b - (b * b - 4 * a * c).sqrt())
    return torch.where(inside, x0 + z * dx, y)


@dataclass
class _Block:
    width: int  # F: features inverted in this pass (a contiguous range of the pass order)
    offset: int  # first position of the block in the transform's pass order
    w_ctx: torch.Tensor | None  # [U_1, C] first-layer weights on the context (None: precomputed)
    b_ctx: torch.Tensor | None  # [U_1]
    ctx_cols: tuple[int, int]  # column range of the precomputed context product
    w_in: torch.Tensor | None  # [U_1, offset] first-layer weights on earlier blocks (None: none)
    w_hidden: list[torch.Tensor]  # [U_l, U_{l-1}] (masked, sliced)
    b_hidden: list[torch.Tensor]  # [U_l]
    w_wh: torch.Tensor  # [F * 2 K, U_L] output rows of widths and heights
    b_wh: torch.Tensor
    w_d: torch.Tensor  # [F * (K - 1), U_L] output rows of the inner derivatives
    b_d: torch.Tensor


@dataclass
class _Transform:
    perm: torch.Tensor  # long [D]: features in pass order (block after block)
    blocks: list[_Block]
    bins: int
    bound: float
    slope: float


class FastInverse:
    """The inverse (sampling direction) of a zuko ``Flow`` of ``MaskedAutoregressiveTransform``
    with ``MonotonicRQSTransform`` splines and ReLU networks, built from its current weights.

    Build it after training (weights are copied; rebuild after they change).  ``matmul_dtype``:
    ``torch.float32`` (exact up to float rounding) or ``torch.bfloat16`` (fast, approximate).

    Per transform, features are handled in pass order (the blocks of features inverted together
    are contiguous ranges), so a block's network reads the outputs of the earlier blocks as one
    prefix and no scatter is needed; the output rows of each block's last layer are split into
    widths+heights and derivatives (contiguous spline parameters); the context part of every
    transform's first layer is one matrix product per chunk (it does not depend on the features).

    ``compile=True`` runs the spline inverse through ``torch.compile`` (one fused loop instead
    of ~30 tensor operations; about 3x faster on the spline) on chunks of exactly ``chunk``
    events (a single static shape, compiled once per process: a few seconds, less with
    inductor's on-disk cache); shorter chunks run the eager spline.  If compilation fails
    (e.g. no C++ compiler), a warning says so and sampling continues eagerly.
    """

    #: largest total width of the precomputed context products (else one product per block)
    max_context_columns = 4096

    def __init__(
        self, flow: nn.Module, *, matmul_dtype: torch.dtype = torch.float32, compile: bool = False
    ) -> None:
        from zuko.nn import MaskedLinear

        self.dtype = dt = matmul_dtype
        self.compile = compile
        self._warm = False
        self.transforms: list[_Transform] = []
        ctx_w: list[torch.Tensor] = []
        ctx_b: list[torch.Tensor] = []
        # per spline transform, the inverse of the learned linear map before it (natural
        # feature order, float64 [D, D]) or None
        linear_inverse: list[torch.Tensor | None] = []
        pending: torch.Tensor | None = None
        for mt in flow.transform.transforms:
            lu = linear_mixing_matrix(mt)
            if lu is not None:
                if pending is not None:
                    raise ValueError("FastInverse: two linear maps in a row")
                pending = torch.linalg.inv(lu)
                continue
            linear_inverse.append(pending)
            pending = None
            linears = [m for m in mt.hyper if isinstance(m, MaskedLinear)]
            if any(not isinstance(m, (MaskedLinear, nn.ReLU)) for m in mt.hyper):
                raise ValueError("FastInverse supports ReLU MaskedMLP networks only")
            uni = mt.univariate
            keywords = getattr(uni, "keywords", {}) or {}
            total = int(mt.total)
            bins = int(mt.shapes[0][0])
            if [tuple(s) for s in mt.shapes] != [(bins,), (bins,), (bins - 1,)]:
                raise ValueError("FastInverse supports rational-quadratic splines only")
            weights = [(m.mask * m.weight).detach().float() for m in linears]
            biases = [m.bias.detach().float() for m in linears]
            d = int(mt.order.numel())
            order = mt.order.cpu()
            feats_of = [(order == v).nonzero()[:, 0] for v in torch.unique(order).tolist()]
            perm = torch.cat(feats_of)
            blocks = []
            offset = 0
            for feats in feats_of:
                rows = feats[:, None] * total + torch.arange(total)  # [F, total]
                w_out = weights[-1][rows.flatten()]
                need = (w_out != 0).any(dim=0).nonzero()[:, 0]
                units = [need]
                for w in reversed(weights[1:-1]):
                    need = (w[need] != 0).any(dim=0).nonzero()[:, 0]
                    units.insert(0, need)
                u1 = units[0]
                w_feat = weights[0][u1, :d]
                if bool((w_feat[:, perm[offset:]] != 0).any()):
                    raise ValueError("FastInverse: a pass depends on features of a later pass")
                wh_rows, d_rows = rows[:, : 2 * bins].flatten(), rows[:, 2 * bins :].flatten()
                last = units[-1]
                ctx_w.append(weights[0][u1, d:])
                ctx_b.append(biases[0][u1])
                blocks.append(
                    _Block(
                        width=len(feats),
                        offset=offset,
                        w_ctx=ctx_w[-1].to(dt).contiguous(),
                        b_ctx=ctx_b[-1].to(dt),
                        ctx_cols=(0, 0),
                        w_in=w_feat[:, perm[:offset]].to(dt).contiguous() if offset else None,
                        w_hidden=[
                            weights[i][units[i]][:, units[i - 1]].to(dt).contiguous()
                            for i in range(1, len(units))
                        ],
                        b_hidden=[biases[i][units[i]].to(dt) for i in range(1, len(units))],
                        w_wh=weights[-1][wh_rows][:, last].to(dt).contiguous(),
                        b_wh=biases[-1][wh_rows].to(dt),
                        w_d=weights[-1][d_rows][:, last].to(dt).contiguous(),
                        b_d=biases[-1][d_rows].to(dt),
                    )
                )
                offset += len(feats)
            self.transforms.append(
                _Transform(
                    perm=perm,
                    blocks=blocks,
                    bins=bins,
                    bound=float(keywords.get("bound", 5.0)),
                    slope=float(keywords.get("slope", 1e-3)),
                )
            )
        # one matrix product for the context part of every block's first layer
        widths = [len(b) for b in ctx_b]
        self.ctx_weight: torch.Tensor | None = None
        self.ctx_bias: torch.Tensor | None = None
        if sum(widths) <= self.max_context_columns:
            self.ctx_weight = torch.cat(ctx_w).to(dt).contiguous()
            self.ctx_bias = torch.cat(ctx_b).to(dt)
            start = 0
            for blk in (b for tr in self.transforms for b in tr.blocks):
                blk.ctx_cols = (start, start + len(blk.b_ctx))  # type: ignore[arg-type]
                start += len(blk.b_ctx)  # type: ignore[arg-type]
                blk.w_ctx = blk.b_ctx = None
        if pending is not None:
            raise ValueError("FastInverse: a linear map after the last spline transform")
        # index maps between the pass orders of consecutive transforms (inverse runs reversed);
        # where a linear map sits between them, one [D, D] matrix instead: the pass order
        # back to the natural one, the map's inverse, then the next pass order (x -> x @ G)
        trs = self.transforms
        self.first_index = trs[-1].perm
        self.next_index: list[torch.Tensor] = []
        self.next_matrix: list[torch.Tensor | None] = []
        for i in range(len(trs) - 1, -1, -1):
            inv = torch.argsort(trs[i].perm)
            nxt = inv[trs[i - 1].perm] if i > 0 else inv
            lin = linear_inverse[i]
            self.next_index.append(nxt)
            if lin is None:
                self.next_matrix.append(None)
                continue
            eye = torch.eye(len(inv), dtype=torch.float64)
            g = eye[:, inv] @ lin.t()
            if i > 0:
                g = g[:, trs[i - 1].perm]
            self.next_matrix.append(g.float().contiguous())

    @torch.no_grad()
    def __call__(
        self, context: torch.Tensor, z: torch.Tensor, *, chunk: int = 1024, workers: int | None = None
    ) -> torch.Tensor:
        """x float32 [B, D] from base noise ``z`` float32 [B, D] and ``context`` [B, C].

        Runs in chunks of ``chunk`` events so the spline arithmetic stays in the CPU caches.
        With ``workers`` > 1 (default: ``torch.get_num_threads()``) and more than one chunk on
        the CPU, the chunks run in that many threads at once, each with one torch thread (no
        OpenMP barriers between the cores: robust on a busy machine); the result does not
        depend on the scheduling.
        """
        if len(z) <= chunk:
            return self._run(context, z, chunk)
        pieces = list(zip(context.split(chunk), z.split(chunk), strict=True))
        workers = torch.get_num_threads() if workers is None else workers
        if workers > 1 and z.device.type == "cpu":
            self.warm_up(chunk, context, workers)
            with single_threaded():
                return torch.cat(_map_single_threaded(self._run_chunk(chunk), pieces, workers))
        return torch.cat([self._run(c, zz, chunk) for c, zz in pieces])

    def warm_up(self, chunk: int, context: torch.Tensor, workers: int = 1) -> None:
        """With ``compile``: compile the spline (or find it fails) on one chunk of zeros before
        chunks run in parallel; with ``workers`` > 1 in a worker thread (one torch thread: the
        compiled kernels are serial, as the workers need them).  ``context`` [*, C] gives
        dtype and device."""
        if not self.compile or self._warm:
            return
        c = torch.zeros(chunk, context.shape[1], dtype=context.dtype, device=context.device)
        zz = torch.zeros(chunk, len(self.first_index), device=context.device)
        if workers > 1 and context.device.type == "cpu":
            _map_single_threaded(lambda _: self._run(c, zz, chunk), [None], workers)
        else:
            self._run(c, zz, chunk)
        self._warm = True

    def _run_chunk(self, chunk: int) -> Callable[[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        def run(piece: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            with torch.no_grad():
                return self._run(piece[0], piece[1], chunk)

        return run

    def _spline_for(self, n: int, chunk: int) -> Callable[..., torch.Tensor]:
        if not self.compile or n != chunk:
            return rqs_inverse_split
        return _compiled_spline()

    def _run(self, context: torch.Tensor, z: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        dt = self.dtype
        spline = self._spline_for(len(z), chunk)
        ctx = context.to(dt)
        pre_all = None
        if self.ctx_weight is not None:
            pre_all = F.linear(ctx, self.ctx_weight.to(ctx.device), self.ctx_bias.to(ctx.device))
        cur = z[:, self.first_index.to(z.device)]
        steps = zip(reversed(self.transforms), self.next_index, self.next_matrix, strict=True)
        for tr, nxt, mat in steps:
            outs: list[torch.Tensor] = []
            outs_dt: list[torch.Tensor] = []
            for blk in tr.blocks:
                if pre_all is not None:
                    pre = pre_all[:, blk.ctx_cols[0] : blk.ctx_cols[1]]
                else:
                    pre = F.linear(ctx, blk.w_ctx, blk.b_ctx)
                if blk.w_in is not None:
                    prev = outs_dt[0] if len(outs_dt) == 1 else torch.cat(outs_dt, 1)
                    h = torch.relu_(torch.addmm(pre, prev, blk.w_in.t()))
                else:
                    h = torch.relu(pre)
                for w, b in zip(blk.w_hidden, blk.b_hidden, strict=True):
                    h = torch.relu_(F.linear(h, w, b))
                wh = F.linear(h, blk.w_wh, blk.b_wh).unflatten(-1, (blk.width, 2, tr.bins))
                dd = F.linear(h, blk.w_d, blk.b_d).unflatten(-1, (blk.width, tr.bins - 1))
                y = cur[:, blk.offset : blk.offset + blk.width]
                try:
                    xb = spline(wh, dd, y, bound=tr.bound, slope=tr.slope)
                except Exception as exc:  # any compiler failure: fall back to eager
                    if spline is rqs_inverse_split:
                        raise
                    warnings.warn(
                        f"torch.compile of the spline inverse failed ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); sampling continues without it (slower). Set "
                        "sample_compile: false in the model config to skip the attempt.",
                        stacklevel=2,
                    )
                    self.compile = False
                    spline = rqs_inverse_split
                    xb = spline(wh, dd, y, bound=tr.bound, slope=tr.slope)
                outs.append(xb)
                outs_dt.append(xb if dt == torch.float32 else xb.to(dt))
            if mat is None:
                cur = torch.cat(outs, 1)[:, nxt.to(z.device)]
            else:
                cur = torch.cat(outs, 1) @ mat.to(z.device)
        return cur


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One torch intra-op thread in the calling thread meanwhile (OpenMP's thread count is per
    thread: others are not affected); for the light work around :func:`map_chunks`."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _single_thread() -> None:
    torch.set_num_threads(1)  # OpenMP's thread count is per calling thread: this worker only


def _map_single_threaded(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """``[fn(item) for item in items]`` on ``workers`` threads of a persistent pool whose
    threads run torch with one intra-op thread each (the caller's setting is untouched)."""
    with _POOL_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(
                workers, thread_name_prefix="fastmc-flow", initializer=_single_thread
            )
    return list(pool.map(fn, items))


def map_chunks(fn: Callable[[slice], Any], n: int, chunk: int, *, workers: int = 1) -> list[Any]:
    """``[fn(slice(i, i + chunk)) for i in range(0, n, chunk)]`` (at least one call, for
    ``n = 0``), on ``workers`` threads with one torch thread each when there are several
    chunks (see :class:`FastInverse`); results in order."""
    slices = [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)] or [slice(0, 0)]
    if workers > 1 and len(slices) > 1:
        return _map_single_threaded(fn, slices, workers)
    return [fn(sl) for sl in slices]


#: How inductor's Python binding calls a compiled CPU kernel (torch 2.x): with the GIL held.
_INDUCTOR_CALL = "kernel({}); Py_RETURN_NONE;"
#: The same call with the arguments parsed under the GIL and the kernel run without it.
_INDUCTOR_CALL_NOGIL = (
    "{{ auto fastmc_args = std::make_tuple({}); Py_BEGIN_ALLOW_THREADS "
    "std::apply(kernel, fastmc_args); Py_END_ALLOW_THREADS }} Py_RETURN_NONE;"
)


def release_gil_in_compiled_kernels() -> bool:
    """Make the CPU kernels that ``torch.compile`` builds from now on release the GIL while
    they run (inductor's binding holds it, so the compiled spline of two worker threads ran
    one at a time: 1.2x on two cores).  The kernels touch only tensor memory, never Python
    objects, as ATen's own operators do when they release it.  Returns whether the binding
    is the known one and was changed (or already was); an unknown torch version is left as
    it is (then the threads just do not overlap in the spline)."""
    try:
        from torch._inductor.codecache import CppPythonBindingsCodeCache
    except ImportError:  # pragma: no cover - torch without inductor
        return False
    current = getattr(CppPythonBindingsCodeCache, "call_entry_function", None)
    if current == _INDUCTOR_CALL:
        CppPythonBindingsCodeCache.call_entry_function = _INDUCTOR_CALL_NOGIL
        return True
    return current == _INDUCTOR_CALL_NOGIL


@functools.cache
def _compiled_spline() -> Callable[..., torch.Tensor]:
    """:func:`rqs_inverse_split` through ``torch.compile`` (static shapes, kernels that
    release the GIL: :func:`release_gil_in_compiled_kernels`), made once."""
    release_gil_in_compiled_kernels()
    return torch.compile(functools.partial(rqs_inverse_split, fusable=True), dynamic=False)


def _soft_clip(v: torch.Tensor, scale: float) -> torch.Tensor:
    return v / (1 + v.abs() * (1 / scale))


@functools.cache
def fast_rqs_class() -> type:
    """zuko's ``MonotonicRQSTransform`` with the bin softmax as exp / cumulative sum.

    The widths and heights are soft-clipped to ``|v| < |log slope| / 2`` before the softmax, so
    ``exp`` cannot overflow and the max shift of ``torch.softmax`` (slow on CPU for 8 bins,
    a third of a training step) is not needed.  Same function as zuko's up to float rounding;
    the weights of models trained with either are interchangeable.
    """
    from zuko.transforms import MonotonicRQSTransform

    class FastRQS(MonotonicRQSTransform):
        def __init__(
            self,
            widths: torch.Tensor,
            heights: torch.Tensor,
            derivatives: torch.Tensor,
            bound: float = 5.0,
            slope: float = 1e-3,
            **kwargs: object,
        ) -> None:
            super(MonotonicRQSTransform, self).__init__(**kwargs)
            scale = -math.log(slope)
            cw = torch.cumsum(_soft_clip(widths, scale / 2).exp(), dim=-1)
            ch = torch.cumsum(_soft_clip(heights, scale / 2).exp(), dim=-1)
            self.horizontal = F.pad(bound * (2 * cw / cw[..., -1:] - 1), (1, 0), value=-bound)
            self.vertical = F.pad(bound * (2 * ch / ch[..., -1:] - 1), (1, 0), value=-bound)
            self.derivatives = F.pad(_soft_clip(derivatives, scale).exp(), (1, 1), value=1.0)

    return FastRQS


def linear_mixing_matrix(step: nn.Module) -> torch.Tensor | None:
    """The matrix ``L U`` (float64 [D, D]) of a learned linear map step of
    :func:`build_spline_flow` (``linear=True``), or None for any other step."""
    from zuko.transforms import LULinearTransform

    if getattr(step, "f", None) is not LULinearTransform:
        return None
    with torch.no_grad():
        t = step()
        return (t.L.double() @ t.U.double()).cpu()


def build_spline_flow(
    features: int,
    context: int,
    *,
    passes: int | None,
    transforms: int,
    hidden: int,
    layers: int,
    bins: int,
    bound: float,
    slope: float,
    linear: bool = False,
    split: str = "features",
) -> nn.Module:
    """A zuko ``Flow`` of masked-autoregressive rational-quadratic spline transforms.

    ``linear``: a learned invertible linear map of all features (zuko's
    ``LULinearTransform``, initialised to the identity) before every spline transform, as in
    the neural spline flows of Durkan et al. (2019), so that the transforms can act on
    combinations of the parameters (differences of angles, ...).

    ``passes=None``: fully autoregressive, orders alternately ascending and descending (as
    zuko's ``NSF``).  ``passes=2``: coupling; transform i uses a fixed pseudo-random
    permutation (seed i), so every pair of features lands in different halves in some
    transform (zuko's ``NSF(passes=2)`` splits the same two halves in every transform).
    ``split`` (coupling only): ``"features"`` splits the features at random in every
    transform (the above); ``"kinematic"`` does so in the odd transforms only, and in the
    even ones splits the momenta from the angles: the features are read as the slot
    parameters of :mod:`fastmc.models.flow.physics` (:func:`~fastmc.models.flow.symmetry.
    angle_columns`: ``features = 4 S + 2``), and transform 0, 4, ... draws the angles given the momenta (pT, mass, log MET first), 2, 6, ...
    the momenta given the angles, so the relation between two jets' pT and their angular
    distance (a resonance's boost) is one spline conditioning.
    Splines: :func:`fast_rqs_class` on ``[-bound, bound]`` with minimum slope ``slope``.
    """
    import numpy as np
    from zuko.distributions import DiagNormal
    from zuko.flows import Flow, UnconditionalDistribution, UnconditionalTransform
    from zuko.flows.autoregressive import MaskedAutoregressiveTransform
    from zuko.transforms import LULinearTransform

    if split not in ("features", "kinematic"):
        raise ValueError(f"split must be 'features' or 'kinematic', not {split!r}")
    angle = None  # the angle mask: only the kinematic split reads the features as slots
    if split == "kinematic":
        if features < 2 or (features - 2) % FEATURES_PER_SLOT:
            raise ValueError(f"split 'kinematic' needs 4 S + 2 features (slots and MET), not {features}")
        angle = angle_columns((features - 2) // FEATURES_PER_SLOT)

    def order(i: int) -> torch.Tensor:
        if passes is None:
            base = torch.arange(features)
            return base if i % 2 == 0 else base.flip(0)
        if angle is None or i % 2 == 1:
            return torch.as_tensor(np.random.default_rng(i).permutation(features))
        first = ~angle if i % 4 == 0 else angle  # the half drawn first (context only)
        ranks = torch.empty(features, dtype=torch.long)
        ranks[first.nonzero()[:, 0]] = torch.arange(int(first.sum()))
        ranks[(~first).nonzero()[:, 0]] = torch.arange(int(first.sum()), features)
        return ranks

    splines = [
        MaskedAutoregressiveTransform(
            features=features,
            context=context,
            passes=passes,
            order=order(i),
            univariate=functools.partial(fast_rqs_class(), bound=bound, slope=slope),
            shapes=[(bins,), (bins,), (bins - 1,)],
            hidden_features=[hidden] * layers,
        )
        for i in range(transforms)
    ]
    steps: list[nn.Module] = []
    for spline in splines:
        if linear:
            steps.append(UnconditionalTransform(LULinearTransform, torch.eye(features)))
        steps.append(spline)
    base = UnconditionalDistribution(
        DiagNormal, loc=torch.zeros(features), scale=torch.ones(features), buffer=True
    )
    return Flow(steps, base)
