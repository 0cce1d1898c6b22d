"""Attribution screen: a linear estimate of every unit's patching effect, for all units at
the cost of one forward and one backward per pass (attribution patching; Nanda 2023,
Syed et al. 2023).

The exact check patches a unit's slice of the A pass with the B pass's and measures
effect = 1 − ‖v_A′ − v_B‖ / ‖v_A − v_B‖ (v: the transformer's output on the noisy-latent
tokens). To first order, patching unit u changes s = ‖v_A − v_B‖ by
Σ ∂s/∂x_A · (x_B − x_A) over the unit's slice of the projection input x (its features,
the run's token scope), so its effect is ≈ −that / s. One backward of s through the A
pass gives ∂s/∂x_A at every projection at once, hence every unit of every layout.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..capture.hooks import SiteKey, capture_units, token_range, unit_features


def feature_owners(layout, token_scope: str) -> dict[SiteKey, np.ndarray]:
    """Per site, the unit (index in ``layout``) that owns each projection-input feature
    (-1: none), so a site's per-feature sums become per-unit sums in one bincount."""
    owners: dict[SiteKey, np.ndarray] = {}
    for u in range(len(layout)):
        for key, feats in unit_features(layout, [u], token_scope).items():
            width = int(feats.max()) + 1
            row = owners.get(key)
            if row is None or row.size < width:
                grown = np.full(max(width, 0 if row is None else row.size), -1, dtype=np.int64)
                if row is not None:
                    grown[:row.size] = row
                owners[key] = row = grown
            row[feats] = u
    return owners


def attribution_scores(transformer, forward: Callable, n_pairs: int, layouts: dict, token_scope: str, *,
                       group: Callable | None = None, batch_pairs: int = 8) -> dict[str, Any]:
    """Per layout, the estimated patch effect of every unit (mean over pairs), and the
    per-pair estimates. ``forward(items)`` returns v (len(items), n) as in
    :func:`plantain_core.causal.effects.measure_effects`; here it runs with gradients."""
    import torch

    group = group or (lambda items: [items])
    owners = {name: feature_owners(lay, token_scope) for name, lay in layouts.items()}
    per_pair = {name: np.zeros((n_pairs, len(lay))) for name, lay in layouts.items()}
    sep = np.zeros(n_pairs)
    stash: dict[SiteKey, Any] = {}

    def keep(grad: bool):
        def editor(site, x, text_len):
            start, stop = token_range(site.stream, token_scope, x.shape[1], text_len)
            key = (site.block, site.stream)
            if grad:
                x = x.detach().requires_grad_(True)
                stash[key] = (x, start, stop)
                return x
            stash[key] = (x.detach(), start, stop)
            return None
        return editor

    passes = 0
    with capture_units(transformer, list(layouts), token_scope, measure=False) as cap:
        for k in range(0, n_pairs, max(1, batch_pairs)):
            batch = list(range(k, min(k + batch_pairs, n_pairs)))
            for g in group([(i, 0) for i in batch]):
                rows = [i for i, _ in g]
                with torch.no_grad():  # B: the slices to patch in, and v_B
                    stash.clear()
                    cap.editor = keep(False)
                    v_b = forward([(i, 1) for i in rows])
                    x_b = dict(stash)
                with torch.enable_grad():  # A: the slices, with gradients of s = ‖v_A − v_B‖
                    stash.clear()
                    cap.editor = keep(True)
                    v_a = forward(g)
                    s = torch.linalg.vector_norm((v_a - v_b).double(), dim=1)
                    keys = list(stash)
                    grads = torch.autograd.grad(s.sum(), [stash[key][0] for key in keys], allow_unused=True)
                passes += 2 * len(rows)
                sep[rows] = s.detach().cpu().numpy()
                for key, grad in zip(keys, grads):
                    if grad is None:
                        continue
                    x_a, start, stop = stash[key]
                    xb, _, _ = x_b[key]
                    if xb.shape != x_a.shape:
                        continue  # A and B differ in sequence length: not patchable
                    contrib = (grad[:, start:stop] * (xb[:, start:stop] - x_a.detach()[:, start:stop])).sum(dim=1)
                    contrib = contrib.double().cpu().numpy()  # (rows, features)
                    for name, own in owners.items():
                        row = own.get(key)
                        if row is None:
                            continue
                        width = min(row.size, contrib.shape[1])
                        mask = row[:width] >= 0
                        for r, i in enumerate(rows):
                            per_pair[name][i] += np.bincount(row[:width][mask], weights=contrib[r, :width][mask],
                                                             minlength=len(layouts[name]))
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = {name: np.where(sep[:, None] > 0, -d / sep[:, None], np.nan) for name, d in per_pair.items()}
    return {"separation": sep, "per_pair": effect,
            "score": {name: np.nanmean(e, axis=0) for name, e in effect.items()}, "passes": passes}


def rank(scores: np.ndarray) -> np.ndarray:
    """1 = the largest estimated effect; NaN scores rank last."""
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    out = np.empty(len(scores), dtype=np.int64)
    out[order] = np.arange(1, len(scores) + 1)
    return out


def top_overlap(a: Sequence[int], b: Sequence[int]) -> int:
    return len(set(int(x) for x in a) & set(int(x) for x in b))
