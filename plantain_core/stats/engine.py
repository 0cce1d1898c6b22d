"""Per-unit paired statistics for one unit layout: pure numpy + statsmodels, vectorised.

Input is two N×U arrays (condition A and B of N pairs, U units); everything works on
D = A − B. No loop runs over units or over flips: the sign-flip null is a matrix
product done tile by tile (flips × units), the split-half analysis is a matrix product over
splits. See ``docs/statistics.md`` for the formulas and their reasoning.

Key trick: with Z_u = D_u / sqrt(Σ D_u²) (Σ D² does not change when signs flip), a sign
pattern s gives g_u = s·Z_u, and every flipped t is a monotone function of |g|:

    t² = (N − 1) g² / (N − g²)          (|g| ≤ √N by Cauchy–Schwarz)

so "|t| > c" is "|g| > c·sqrt(N / (N − 1 + c²))" — one scalar cut for every unit.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import attrs
import numpy as np

from .splithalf import split_half

DEFAULT_FLIPS = 200
DEFAULT_SPLITS = 100
DEFAULT_SEED = 0
DEFAULT_THRESHOLDS = (3.0, 5.0)
LARGE_D = 0.8  # Cohen's conventional "large" effect
TOP_BLOCKS = 5
#: Tile of the sign-flip null (flips × units), 1M float64 = 8 MB: 64 flips of Klein's
#: 16,320 units. Small enough to stay in cache between the product and the passes over
#: it; memory does not grow with the flips. Measured on a 2-core EPYC (single BLAS
#: thread): 0.46 s for 10,000 flips against 0.6 s with 64 MB chunks.
TILE_UNITS = 65_536
TILE_ELEMENTS = 1_048_576
#: Relative tolerance for "null max |t| ≥ observed |t|": the identity flip reproduces
#: the observed t only up to rounding, and a tie must count as "≥". The same tolerance
#: makes "|t| > threshold" a tie (not above) for the observed and the null counts alike.
TIE_RTOL = 1e-9
#: A unit whose sd(D) is below this share of its captures' magnitude has D constant up to
#: rounding (captures are float32 sums: one ulp is 6e-8 of the value): its t would be
#: rounding noise over rounding noise (1e16 for B = A − 2 computed in float), so it is
#: untested, like an exactly constant one.
ZERO_VAR_RTOL = 1e-6


def json_float(x) -> float | None:
    """A float for JSON: NaN/inf → None, 10 significant digits so reruns print the same."""
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.10g}")


@attrs.frozen
class BlockStats:
    """One block (the unit name before its last '.'), e.g. ``single[0]``."""

    block: str
    units: int
    max_abs_t: float  # NaN when no unit of the block could be tested
    n_abs_t_gt: int  # units with |t| above the first threshold
    median_abs_d: float

    def as_dict(self, threshold: float) -> dict[str, Any]:
        return {
            "block": self.block,
            "units": self.units,
            "max_abs_t": json_float(self.max_abs_t),
            f"n_abs_t_gt_{threshold:g}": self.n_abs_t_gt,
            "median_abs_d": json_float(self.median_abs_d),
        }


@attrs.frozen(eq=False)
class LayoutStats:
    """Everything computed for one layout. Per-unit arrays have length U and are NaN for
    units that could not be tested (zero variance or non-finite captures)."""

    layout: str
    units: tuple[str, ...]
    blocks_of_units: tuple[str, ...]
    pair_ids: tuple[str, ...]
    diff: np.ndarray  # N×U, D = A − B (interpreters read per-pair differences)
    mean_diff: np.ndarray
    t: np.ndarray
    d: np.ndarray
    p: np.ndarray  # parametric two-sided, t distribution with N−1 df
    q: np.ndarray  # Benjamini–Hochberg over the tested units
    p_fwer: np.ndarray  # max-|t| sign-flip permutation
    zero_variance: np.ndarray  # bool U
    nonfinite: np.ndarray  # bool U
    thresholds: tuple[float, ...]
    null_counts: np.ndarray  # (flips_used, T) int: units with |t'| > threshold per flip
    null_max_abs_t: np.ndarray  # (flips_used,)
    flips: int  # flips asked for
    flips_used: int  # flips computed (2^(N−1) when exact)
    exact: bool
    seed: int
    split_r: np.ndarray  # (S,) Pearson r between halves; NaN where undefined
    split_example: tuple[np.ndarray, np.ndarray] | None  # per-unit t of both halves, the median-r split
    split_note: str | None
    blocks: tuple[BlockStats, ...]
    # What a reviewer asks next (plantain_core.stats.checks.review fills these; None until then):
    d_low: np.ndarray | None = None  # U: 95% interval of d_z
    d_high: np.ndarray | None = None
    tost_bound: float | None = None  # equivalence bound, d_z units
    p_tost: np.ndarray | None = None  # U: TOST p against |d_z| < bound
    common_share: float | None = None  # share of standardized D's variance the per-pair common mode explains
    common_mode: Any = None  # common_mode.CommonMode: the shared shift's readings, what specificity tests against
    specific: Any = None  # freedman_lane.Adjusted: the test beyond the common mode
    length: Any = None  # checks.Adjusted: the test at zero token-count difference

    @property
    def min_p_fwer(self) -> float:
        """The smallest p_fwer this null can give (small-N honesty)."""
        return 1.0 / self.flips_used if self.exact else 1.0 / (self.flips_used + 1)

    @property
    def n_pairs(self) -> int:
        return int(self.diff.shape[0])

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def tested(self) -> np.ndarray:
        return ~(self.zero_variance | self.nonfinite)


def top_by(strength: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` units of largest ``strength``, strongest first (ties in unit
    order); NaN never chosen."""
    strength = np.asarray(strength, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(strength))
    return finite[np.argsort(-strength[finite], kind="stable")][:k]


def top_by_abs_t(t: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` units with the largest |t|, strongest first; NaN t never chosen."""
    return top_by(np.abs(np.asarray(t, dtype=np.float64)), k)


def block_of(unit: str) -> str:
    """``joint[3].h07`` → ``joint[3]``."""
    return unit.rsplit(".", 1)[0] if "." in unit else unit


def top_blocks(blocks: Sequence[BlockStats], n: int = TOP_BLOCKS) -> list[BlockStats]:
    ranked = [b for b in blocks if math.isfinite(b.max_abs_t)]
    return sorted(ranked, key=lambda b: -b.max_abs_t)[:n]


def count_mlp_units(units: Sequence[str]) -> int:
    """Units of the ``slices16`` layout that are MLP channels, not attention.

    Single-block ``to_out`` inputs are [attention | MLP]; joint ``to_out[0]`` inputs are
    attention only, so the joint blocks' slice count is the attention slice count (192 on
    Klein 4B: 3072 / 16). Single-block slices with a higher index are MLP channels.
    """
    joint: dict[str, int] = {}
    single: list[int] = []
    for u in units:
        blk, _, leaf = u.rpartition(".")
        if not leaf.startswith("s") or not leaf[1:].isdigit():
            continue
        idx = int(leaf[1:])
        if blk.startswith("joint"):
            joint[blk] = max(joint.get(blk, 0), idx + 1)
        elif blk.startswith("single"):
            single.append(idx)
    if not single:
        return 0
    attn_slices = max(joint.values()) if joint else 192
    return sum(1 for i in single if i >= attn_slices)


def paired_t(diff: np.ndarray, scale: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean, t, d_z, and the zero-variance / non-finite masks (t, d NaN there).
    ``scale`` (U) is the magnitude of the values D was computed from (default: |D| itself);
    sd(D) ≤ ZERO_VAR_RTOL·scale counts as zero variance."""
    n = diff.shape[0]
    nonfinite = ~np.isfinite(diff).all(axis=0)
    safe = np.where(nonfinite, 0.0, diff)
    mean = safe.mean(axis=0)
    sd = safe.std(axis=0, ddof=1) if n > 1 else np.full(diff.shape[1], np.nan)
    if scale is None:
        scale = np.abs(safe).max(axis=0, initial=0.0)
    zero_var = ((np.ptp(safe, axis=0) == 0) | (sd <= ZERO_VAR_RTOL * np.where(np.isfinite(scale), scale, 0.0))) \
        & ~nonfinite
    bad = nonfinite | zero_var
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(bad, np.nan, mean / sd)
    t = d * math.sqrt(n)
    mean = np.where(nonfinite, np.nan, mean)
    return mean, t, d, zero_var, nonfinite


def sign_patterns(n: int, flips: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """F×N matrix of ±1 signs. Exact enumeration when 2^(N−1) ≤ F: the first sign is fixed
    to +1 because a global flip leaves |t| unchanged, so 2^(N−1) patterns cover the
    whole null distribution of |t| (the identity pattern included)."""
    if n - 1 < 62 and 2 ** (n - 1) <= flips:
        codes = np.arange(2 ** (n - 1), dtype=np.int64)
        bits = (codes[:, None] >> np.arange(n - 1, dtype=np.int64)[None, :]) & 1
        signs = np.ones((codes.size, n), dtype=np.int8)
        signs[:, 1:] = 1 - 2 * bits.astype(np.int8)
        return signs, True
    # Generated in one call so the draws do not depend on the tile size.
    return (1 - 2 * rng.integers(0, 2, size=(flips, n), dtype=np.int8)).astype(np.int8), False


def null_signs(n: int, flips: int, seed: int) -> tuple[np.ndarray, bool]:
    """The run's sign patterns: flips drawn from ``default_rng(SeedSequence(seed).spawn(2)[0])``
    (the second child seeds the splits), or all 2^(N−1) patterns when that many fit."""
    return sign_patterns(n, flips, np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0]))


def g_cut(threshold: float, n: int) -> float:
    """|t| > c  ⇔  |g| > c·sqrt(N / (N − 1 + c²))."""
    return threshold * math.sqrt(n / (n - 1 + threshold * threshold))


def t_from_g(g: np.ndarray, n: int) -> np.ndarray:
    """|t| from |g| (|g| = √N means all flipped differences are equal: |t| = ∞)."""
    g2 = g * g
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.sqrt((n - 1) * g2 / np.maximum(n - g2, 0.0))
    return np.where(np.isnan(t), np.inf, t)


def sign_flip_null(z: np.ndarray, signs: np.ndarray, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Null counts of |t'| > each threshold and null max |t'| for each sign pattern.

    ``z`` is N×V (tested units only, columns scaled to unit norm). The F×V products are
    made tile by tile (flips × units, TILE_ELEMENTS float64s) so each tile stays in the
    CPU cache for the passes that follow the product (abs, max, one compare per
    threshold); memory use does not grow with F or V. float64 throughout: a float32
    product is faster, but making its counts exact costs extra passes that ate the gain
    (measured), and counts must not depend on rounding.
    """
    n, v = z.shape
    f = signs.shape[0]
    cuts = [g_cut(thr * (1 + TIE_RTOL), n) for thr in thresholds]  # a tie is not above (as observed counts)
    counts = np.zeros((f, len(cuts)), dtype=np.int64)
    max_g = np.zeros(f)
    if v == 0:
        return counts, max_g
    ustep = min(v, TILE_UNITS)
    fstep = max(1, min(f, TILE_ELEMENTS // ustep))
    blocks = [np.ascontiguousarray(z[:, u:u + ustep], dtype=np.float64) for u in range(0, v, ustep)]
    buf = np.empty((fstep, ustep))  # reused: fresh arrays per tile cost page faults
    above = np.empty((fstep, ustep), dtype=bool)
    with single_blas_thread():
        _fill_null(signs, blocks, cuts, buf, above, counts, max_g, fstep)
    return counts, t_from_g(max_g, n)


def single_blas_thread():
    """A context limiting BLAS to one thread.

    A product with an inner dimension of N ≈ 25 is memory-bound: a second BLAS thread
    gains little, and on a busy machine the threads' hand-offs at every tile made the
    null 3–10× slower (measured: 5.0 s against 0.6 s on a loaded 2-core machine).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _fill_null(signs, blocks, cuts, buf, above, counts, max_g, fstep) -> None:
    f = signs.shape[0]
    for start in range(0, f, fstep):
        k = min(fstep, f - start)
        s = signs[start:start + k].astype(np.float64)
        rows = slice(start, start + k)
        for zb in blocks:
            g, b = buf[:k, : zb.shape[1]], above[:k, : zb.shape[1]]
            np.matmul(s, zb, out=g)
            np.abs(g, out=g)
            np.maximum(max_g[rows], g.max(axis=1), out=max_g[rows])
            for j, cut in enumerate(cuts):
                np.greater(g, cut, out=b)
                counts[rows, j] += b.view(np.uint8).sum(axis=1, dtype=np.uint32)  # 0/1 bytes: fast exact sum


def fwer_p(abs_t: np.ndarray, null_max: np.ndarray, exact: bool) -> np.ndarray:
    """max-|t| permutation p: (1 + #{null max ≥ |t_u|}) / (1 + F), or the exact
    proportion #{patterns with max ≥ |t_u|} / 2^(N−1) when enumerated."""
    ordered = np.sort(null_max)
    finite = np.isfinite(abs_t)
    at_least = np.zeros(abs_t.shape, dtype=np.int64)
    # ties count as "≥": compare against |t| shrunk by a relative rounding tolerance
    probe = abs_t[finite] * (1 - TIE_RTOL)
    at_least[finite] = ordered.size - np.searchsorted(ordered, probe, side="left")
    f = ordered.size
    p = at_least / f if exact else (1 + at_least) / (1 + f)
    return np.where(finite, p, np.nan)


def block_stats(units_block: Sequence[str], abs_t: np.ndarray, abs_d: np.ndarray, threshold: float) -> tuple[BlockStats, ...]:
    """Per-block aggregates, blocks in order of first appearance (a few dozen blocks)."""
    names, first, inverse = np.unique(np.asarray(units_block), return_index=True, return_inverse=True)
    out = []
    for j in np.argsort(first):
        sel = inverse == j
        bt, bd = abs_t[sel], abs_d[sel]
        fin = np.isfinite(bt)
        out.append(BlockStats(
            block=str(names[j]),
            units=int(sel.sum()),
            max_abs_t=float(bt[fin].max()) if fin.any() else math.nan,
            n_abs_t_gt=int(np.count_nonzero(bt[fin] > threshold * (1 + TIE_RTOL))),
            median_abs_d=float(np.median(bd[fin])) if fin.any() else math.nan,
        ))
    return tuple(out)


@attrs.frozen
class StatsOptions:
    """How a layout's statistics are drawn: the sign flips of the max-|t| null, the split-half
    splits, their seed, and the |t| thresholds counted against the null. One value, passed
    whole (``RunConfig.stats_options()`` is a run's)."""

    flips: int = DEFAULT_FLIPS
    splits: int = DEFAULT_SPLITS
    seed: int = DEFAULT_SEED
    thresholds: tuple[float, ...] = attrs.field(default=DEFAULT_THRESHOLDS,
                                                converter=lambda t: tuple(float(x) for x in t))

    def as_dict(self) -> dict[str, Any]:
        """As summary.json's ``stats`` records them."""
        return {"flips": self.flips, "splits": self.splits, "seed": self.seed, "thresholds": list(self.thresholds)}


def compute_layout_stats(
    a: np.ndarray,
    b: np.ndarray,
    units: Sequence[str],
    *,
    layout: str = "units",
    pair_ids: Sequence[str] | None = None,
    options: StatsOptions = StatsOptions(),
) -> LayoutStats:
    """All statistics of one layout from its N×U captures of condition A and B."""
    from scipy import stats as sps  # statsmodels depends on scipy: always present
    from statsmodels.stats.multitest import multipletests

    flips, splits, seed, thresholds = options.flips, options.splits, options.seed, options.thresholds

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be N×U arrays of one shape, got {a.shape} and {b.shape}")
    n, u = a.shape
    units = tuple(str(x) for x in units)
    if len(units) != u:
        raise ValueError(f"{len(units)} unit names for {u} columns")
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    if flips < 1 or splits < 0:
        raise ValueError("flips must be ≥ 1 and splits ≥ 0")
    thresholds = tuple(float(x) for x in thresholds)
    if not thresholds or any(not math.isfinite(x) or x <= 0 for x in thresholds):
        raise ValueError(f"thresholds must be positive numbers, got {thresholds}")
    pair_ids = tuple(str(x) for x in pair_ids) if pair_ids is not None else tuple(str(i) for i in range(n))

    diff = a - b
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(a).max(axis=0, initial=0.0), np.abs(b).max(axis=0, initial=0.0))
    mean, t, d, zero_var, nonfinite = paired_t(diff, scale)
    tested = ~(zero_var | nonfinite)
    abs_t = np.abs(t)

    p = np.full(u, np.nan)
    q = np.full(u, np.nan)
    p[tested] = 2.0 * sps.t.sf(abs_t[tested], n - 1)
    if tested.any():
        q[tested] = multipletests(p[tested], method="fdr_bh")[1]

    signs, exact = null_signs(n, flips, seed)
    split_seq = np.random.SeedSequence(seed).spawn(2)[1]
    dt = diff[:, tested]
    z = dt / np.sqrt((dt * dt).sum(axis=0))
    null_counts, null_max = sign_flip_null(z, signs, thresholds)
    p_fwer = fwer_p(np.where(tested, abs_t, np.nan), null_max, exact)

    split_r, example, note = split_half(diff, tested, splits, np.random.default_rng(split_seq)) if splits else (
        np.zeros(0), None, "split-half not computed (splits = 0)")

    blocks_of_units = tuple(block_of(x) for x in units)
    return LayoutStats(
        layout=layout,
        units=units,
        blocks_of_units=blocks_of_units,
        pair_ids=pair_ids,
        diff=diff,
        mean_diff=mean,
        t=t,
        d=d,
        p=p,
        q=q,
        p_fwer=p_fwer,
        zero_variance=zero_var,
        nonfinite=nonfinite,
        thresholds=thresholds,
        null_counts=null_counts,
        null_max_abs_t=null_max,
        flips=int(flips),
        flips_used=int(signs.shape[0]),
        exact=exact,
        seed=int(seed),
        split_r=split_r,
        split_example=example,
        split_note=note,
        blocks=block_stats(blocks_of_units, abs_t, np.abs(d), thresholds[0]),
    )
