"""Split-half reproducibility: Pearson r across units between the per-unit t of two random
halves of the pairs, for many random splits at once (docs/statistics.md)."""

from __future__ import annotations

import numpy as np

SPLIT_CHUNK_ELEMENTS = 4_000_000  # splits per chunk × units


def split_half(diff: np.ndarray, tested: np.ndarray, splits: int, rng: np.random.Generator):
    """Pearson r across units between per-unit t of two random halves of the pairs.

    All splits at once: half sums are an S×N indicator matrix times D. Columns are
    centred first so the variance from sums of squares does not lose precision.
    """
    n = diff.shape[0]
    n1 = n // 2
    n2 = n - n1
    if n1 < 2:
        return np.full(splits, np.nan), None, f"split-half needs at least 4 pairs (got {n})"
    x = np.where(tested[None, :], diff, 0.0)
    centre = x.mean(axis=0)
    x = x - centre
    x2 = x * x
    order = np.argsort(rng.random((splits, n)), axis=1)  # one permutation per split
    m1 = np.zeros((splits, n))
    np.put_along_axis(m1, order[:, :n1], 1.0, axis=1)
    m2 = 1.0 - m1

    def half_t(m, k):
        mean = (m @ x) / k
        sq = m @ x2
        var = (sq - k * mean * mean) / (k - 1)
        scale = sq / k
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (mean + centre) / np.sqrt(var / k)
        bad = (var <= 1e-12 * scale) | ~tested[None, :]
        return np.where(bad, np.nan, t)

    # Splits in chunks, so memory stays bounded (S × U floats per array otherwise: 100,000
    # splits of 16,320 units would be 13 GB); rows are independent, so the numbers are too.
    chunk = max(1, SPLIT_CHUNK_ELEMENTS // max(x.shape[1], 1))
    rs = [_pearson_rows(half_t(m1[s:s + chunk], n1), half_t(m2[s:s + chunk], n2)) for s in range(0, splits, chunk)]
    r = np.concatenate(rs) if rs else np.zeros(0)
    if not np.isfinite(r).any():
        return r, None, "split-half r is undefined (too few units with finite t in both halves)"
    # the example the figure shows is the split whose r is the median (the number the card quotes)
    m = int(np.nanargmin(np.abs(r - np.nanmedian(r))))
    example = (half_t(m1[m:m + 1], n1)[0], half_t(m2[m:m + 1], n2)[0])
    return r, example, None


def _pearson_rows(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Per row, Pearson r between t1 and t2 over the columns finite in both (NaN under 3)."""
    ok = np.isfinite(t1) & np.isfinite(t2)
    cnt = ok.sum(axis=1)
    a = np.where(ok, t1, 0.0)
    b = np.where(ok, t2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        am = a.sum(axis=1, keepdims=True) / cnt[:, None]
        bm = b.sum(axis=1, keepdims=True) / cnt[:, None]
        ac = np.where(ok, a - am, 0.0)
        bc = np.where(ok, b - bm, 0.0)
        r = (ac * bc).sum(axis=1) / np.sqrt((ac * ac).sum(axis=1) * (bc * bc).sum(axis=1))
    return np.where(cnt >= 3, r, np.nan)
