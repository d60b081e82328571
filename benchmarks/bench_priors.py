"""Speed of the latent-prior fits: torch EM (fastmc.models.priors.fit_gmm) vs scikit-learn's
BayesianGaussianMixture (fit_bgmm), full covariance, same data and iteration count.

    .venv/bin/python benchmarks/bench_priors.py [--events 20000] [--dim 160] [--components 100]
        [--iters 5] [--threads 2]

Data: a random 10-component mixture in `dim` dimensions (stands in for latent codes).  Both
fits run exactly `iters` EM iterations (tol=0 so neither stops early; the non-convergence
warnings are expected and silenced); reported: seconds per iteration, initialisation
included once (k-means for both).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from fastmc.models.vae.prior_fit import fit_bgmm, fit_gmm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=160)
    ap.add_argument("--components", type=int, default=100)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (10, args.dim))
    x = centres[rng.integers(10, size=args.events)] + rng.normal(size=(args.events, args.dim))
    res = {}
    for name, fit in (("torch EM (float32)", fit_gmm), ("sklearn BGMM (float64)", fit_bgmm)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t0 = time.perf_counter()
            kw = {"chunk_iter": args.iters} if fit is fit_bgmm else {}
            fit(x, components=args.components, max_iter=args.iters, tol=0.0, seed=0, **kw)
            res[name] = time.perf_counter() - t0
        print(f"{name}: {res[name]:.1f} s for {args.iters} iterations "
              f"({args.events} events x {args.dim} dims, {args.components} components)", flush=True)
    a, b = res.values()
    print(f"speed-up of torch EM: {b / a:.1f}x")


if __name__ == "__main__":
    main()
