"""The common mode of one layout's differences: the per-pair shift that every unit shares,
estimated so that units with effects of their own cannot move it.

Model (docs/statistics.md, "Specificity"): D_iu = μ_u + λ_u·(s + c_i) + e_iu, where c is
the common mode's variation across pairs (mean zero), s the shift it carries on average,
λ_u each unit's loading and μ_u the unit's own effect. Then

- c is the mean standardized, pair-centred difference of the *other* tested units
  (leave-one-out: a unit's own noise must not enter its regressor). Centring makes
  own effects, constant across pairs, drop out of c;
- λ_u is the slope of D_u on c (identified by the pair-to-pair variation alone);
- s is identified only by assuming that most units carry no effect of their own: the units
  without one satisfy mean(D_u) = λ_u·s, so s is fitted through the origin by least
  trimmed squares over the half of the units that fit best (a high-breakdown fit), then
  refitted by least squares over every unit that agrees with it (|t| ≤ 3).

A unit's specific effect is then the intercept of D_u on x_u = s + c_u (read at x = 0,
where the common mode is absent); its standard error grows as s lies farther outside the
range of x (the identification figure, Adjusted.inflation).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

#: |t| under which a unit agrees with the fitted shift (the reweighting step of LTS)
AGREE = 3.0
#: a second reading of the shift counts when its trimmed deviance is within this many
#: standard deviations of the best's (measured: docs/statistics.md, calibration)
RIVAL = 3.0
#: …and moves the units' specific t's by more than this (median)
DISTINCT = 1.0
#: pair resamples for the shift's bootstrap variance
SHIFT_BOOTS = 40
#: C-steps of the LTS fit (each one cannot increase the trimmed sum; they settle in a few)
C_STEPS = 50


@attrs.frozen(eq=False)
class Reading:
    """One reading of the shared shift s: the value, its variance as the least-squares refit
    over the agreeing units gives it, and how many units agree with it (|t| ≤ AGREE)."""

    shift: float
    var: float
    agreeing: int


@attrs.frozen(eq=False)
class CommonMode:
    centred: np.ndarray  # N×U: c_u, the leave-one-out common mode's variation (zeros untested)
    readings: tuple[Reading, ...]  # the best reading first; a second where another fits about as well
    share: float  # share of the centred standardized differences' variance a per-unit fit on c explains
    note: str | None = None  # why there is no common mode to test against

    def nuisance(self, k: int = 0) -> np.ndarray:
        """x_u = s + c_u under reading k (untested columns stay s: the test skips them)."""
        return self.centred + self.readings[k].shift


NO_VARIATION = ("the common mode is the same in every pair: a shift all units share cannot be told apart from "
                "unit-specific effects")


def common_mode(diff: np.ndarray, tested: np.ndarray, seed: int | None = 0) -> CommonMode:
    """The common mode and the shared shift's readings. With a ``seed``, each reading's
    variance is at least its bootstrap variance over pairs (SHIFT_BOOTS resamples of the N
    pairs, the fit redone from this reading): the least-squares variance assumes independent units,
    but the units share the common mode's noise, and with many units carrying own effects
    it was 3.5× too small (false specific hits at 40–50% own effects; docs/statistics.md)."""
    mode = _fit(diff, tested)
    if seed is None or mode.note is not None:
        return mode
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    n = diff.shape[0]
    starts = tuple(r.shift for r in mode.readings)
    shifts: list[tuple[float, ...]] = []
    for _ in range(SHIFT_BOOTS):  # each reading refitted in the resample, started where the data's is
        boot = _fit(diff[rng.integers(0, n, n)], tested, starts)
        if boot.note is None:
            shifts.append(tuple(r.shift for r in boot.readings))
    if len(shifts) < 3:
        return mode
    spread = np.var(np.asarray(shifts), axis=0, ddof=1)
    return attrs.evolve(mode, readings=tuple(attrs.evolve(r, var=max(r.var, float(v)))
                                             for r, v in zip(mode.readings, spread)))


def _fit(diff: np.ndarray, tested: np.ndarray, starts: tuple[float, ...] | None = None) -> CommonMode:
    """The common mode and its readings (or, given ``starts``, one reading from each start)."""
    n, u = diff.shape
    v = int(tested.sum())
    empty = CommonMode(np.zeros((n, u)), (), math.nan)
    if v < 3 or n < 4:
        return attrs.evolve(empty, note="needs at least 3 tested units and 4 pairs")
    d = diff[:, tested]
    sd = d.std(axis=0, ddof=1)
    if not (sd > 0).all():  # only a pair resample can make a tested unit constant
        return attrs.evolve(empty, note="a unit is constant in these pairs")
    z = d / sd
    zc = z - z.mean(axis=0)
    c_all = zc.mean(axis=1)
    if np.ptp(c_all) <= 1e-9 * max(float(np.abs(zc).max()), 1e-300):
        return attrs.evolve(empty, note=NO_VARIATION)
    share = _share(zc, c_all)
    c = (v * c_all[:, None] - zc) / (v - 1)  # leave-one-out, still centred
    dc = d - d.mean(axis=0)
    cc = (c * c).sum(axis=0)
    slope = (c * dc).sum(axis=0) / cc
    sigma = np.sqrt(((dc - c * slope) ** 2).sum(axis=0) / (n - 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = d.mean(axis=0) * math.sqrt(n) / sigma  # t of each unit's mean …
        b = slope * math.sqrt(n) / sigma  # … and how much of it one unit of shift explains
    noise = n / cc  # variance of b's estimation noise (a's is 1): a − b·s has variance 1 + s²·noise
    ok = np.isfinite(a) & np.isfinite(b)
    centred = np.zeros((n, u))
    centred[:, tested] = c
    fit = Fit(a[ok], b[ok], noise[ok])
    if starts is not None:
        h = fit.a.size // 2 + 1
        return CommonMode(centred, tuple(_reading(fit, _c_steps(fit, s, h)[0]) for s in starts), share)
    return CommonMode(centred, readings(fit), share)


@attrs.frozen(eq=False)
class Fit:
    """Per unit: a = √N·mean(D)/σ, b = √N·λ/σ, and the variance of b's noise. A unit without
    an effect of its own has a = b·s up to noise of variance 1 + s²·noise."""

    a: np.ndarray
    b: np.ndarray
    noise: np.ndarray

    def t(self, s: float) -> np.ndarray:
        """Each unit's specific t at shift s."""
        return (self.a - self.b * s) / np.sqrt(1.0 + s * s * self.noise)

    def deviance(self, s: float) -> np.ndarray:
        """Each unit's −2 log-likelihood at s (up to a constant): t² plus the log of its
        variance, without which a shift far out would win by inflating every variance."""
        return self.t(s) ** 2 + np.log1p(s * s * self.noise)

    def refit(self, keep: np.ndarray, s: float) -> tuple[float, float]:
        """Weighted least squares of a on b over ``keep``, weights for residuals at s: (s, var)."""
        w = 1.0 / (1.0 + s * s * self.noise[keep])
        bb = float((w * self.b[keep] ** 2).sum())
        if not bb > 0:
            return s, 0.0
        return float((w * self.a[keep] * self.b[keep]).sum() / bb), 1.0 / bb


def readings(fit: Fit) -> tuple[Reading, ...]:
    """The LTS reading of the shift (the h = ⌊V/2⌋ + 1 best-fitting units; Rousseeuw 1984,
    each unit's residual with its variance 1 + s²·noise) and, where another shift fits
    nearly as well (trimmed deviance within RIVAL × √(2h), the sd of a χ²_h sum, of the
    best) while moving the units' specific t's by more than 1 (median), that second reading
    too: then "most units carry no effect of their own" does not say which group is the
    common mode, and a unit counts as specific only beyond both."""
    a, b = fit.a, fit.b
    v = a.size
    if v == 0 or not (b * b).sum() > 0:
        return (Reading(0.0, 0.0, 0),)
    h = v // 2 + 1
    ratio = np.divide(a, b, out=np.zeros_like(a), where=b != 0)
    starts = np.unique(np.concatenate([[0.0], np.quantile(ratio[b != 0], np.linspace(0.02, 0.98, 25))]))
    found = sorted((_c_steps(fit, float(s), h) for s in starts), key=lambda so: so[1])  # stable: rounding-proof
    best = _reading(fit, found[0][0])
    t_best = fit.t(best.shift)
    for s, obj in found[1:]:
        if obj - found[0][1] > RIVAL * math.sqrt(2 * h):
            break
        rival = _reading(fit, s)
        if np.median(np.abs(fit.t(rival.shift) - t_best)) > DISTINCT:
            return best, rival
    return (best,)


def _reading(fit: Fit, s: float) -> Reading:
    """The reading refitted over the units whose |t| at s is within AGREE."""
    agree = np.abs(fit.t(s)) <= AGREE
    if not agree.any():
        return Reading(s, 0.0, 0)
    s, var = fit.refit(agree, s)
    return Reading(s, var, int(agree.sum()))


def _c_steps(fit: Fit, s: float, h: int) -> tuple[float, float]:
    """Concentration steps (FAST-LTS): keep the h best-fitting units, refit, repeat; the best
    trimmed deviance seen (the weighted refit is a step, not an exact minimiser)."""
    best, best_obj = s, math.inf
    for _ in range(C_STEPS):
        dev = fit.deviance(s)
        keep = np.argpartition(dev, h - 1)[:h]
        obj = float(dev[keep].sum())
        if obj >= best_obj:
            break
        best, best_obj = s, obj
        s = fit.refit(keep, s)[0]
    return best, best_obj


def _share(zc: np.ndarray, c: np.ndarray) -> float:
    """1 − Σ(z − ẑ)² / Σ(z − z̄)² for per-unit fits of the centred z on c."""
    fit = np.outer(c, (c @ zc) / (c @ c))
    total = float((zc * zc).sum())
    return 1.0 - float(((zc - fit) ** 2).sum()) / total if total > 0 else math.nan
