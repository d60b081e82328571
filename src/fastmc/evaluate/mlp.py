"""The optional small MLP of the whole-event classifier test (``ClassifierConfig(model="mlp")``).

As in the event-generation papers' classifier tests: 3 hidden layers of 128 SiLU units, Adam
(lr 1e-3), weighted binary cross-entropy, on the whole-event features standardised with the
training rows' mean and spread, NaN (missing object) set to 0 with a presence flag per
feature (:func:`fastmc.evaluate.features.fill_missing`).  It needs
more events than the gradient-boosted trees (on 2k vs 2k events with 2 folds it reached AUC
0.64 where the trees reach 0.89); use it on large samples.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fastmc.evaluate.features import fill_missing

__all__ = ["fit_predict_mlp"]


def fit_predict_mlp(x_tr: np.ndarray, y_tr: np.ndarray, w_tr: np.ndarray, x_te: np.ndarray, *,
                    max_epochs: int, seed: int) -> np.ndarray:
    """Train the MLP on ``x_tr`` [N, D] (NaN = missing), labels ``y_tr`` [N] (0/1), weights
    ``w_tr`` [N]; return the probabilities of class 1 for ``x_te`` [M, D], float64 [M].  Up to
    ``max_epochs`` epochs, early stopping on 10% of the training rows (10 epochs without
    improvement, best weights kept).  Seeded by ``seed``; the global torch RNG is left alone."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (an absent object): 0 below
        mean, std = np.nanmean(x_tr, axis=0), np.nanstd(x_tr, axis=0)
    mean, std = np.nan_to_num(mean), np.nan_to_num(std)
    a, b = fill_missing(x_tr, mean, std), fill_missing(x_te, mean, std)
    gen = torch.Generator().manual_seed(seed)
    torch_rng = np.random.default_rng(seed)
    perm = torch_rng.permutation(len(a))
    n_val = max(int(0.1 * len(a)), 1)
    val, tr = perm[:n_val], perm[n_val:]
    xt, yt, wt = (torch.from_numpy(v) for v in (a, y_tr.astype(np.float32), w_tr.astype(np.float32)))
    d = a.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(d, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
            torch.nn.Linear(128, 128), torch.nn.SiLU(), torch.nn.Linear(128, 1),
        )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    best, best_state, bad = math.inf, None, 0
    tr_t, val_t = torch.from_numpy(tr), torch.from_numpy(val)
    batch = int(np.clip(len(tr) // 50, 32, 256))  # >= 50 steps per epoch on small samples
    for _ in range(max_epochs):
        net.train()
        order = tr_t[torch.randperm(len(tr_t), generator=gen)]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = (loss_fn(net(xt[idx]).squeeze(1), yt[idx]) * wt[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float((loss_fn(net(xt[val_t]).squeeze(1), yt[val_t]) * wt[val_t]).mean())
        if v < best - 1e-5:
            best, bad = v, 0
            best_state = {k: t.clone() for k, t in net.state_dict().items()}
        else:
            bad += 1
            if bad >= 10:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        return torch.sigmoid(net(torch.from_numpy(b)).squeeze(1)).numpy().astype(np.float64)
