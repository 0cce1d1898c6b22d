"""The card's figures: per-block t heatmap, null count histogram, split-half scatter.

matplotlib is imported inside the functions (``plantain list`` must stay fast) and used
through ``Figure`` objects with the Agg canvas, never pyplot, so no global state or GUI
backend is involved. PNGs are written atomically without a Software stamp, so reruns
give the same bytes.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np

from ..rundir.fsutil import atomic_write_bytes
from ..stats.engine import LayoutStats

FIGURES = "figures"


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: pathlib.Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def block_matrix(st: LayoutStats) -> tuple[list[str], np.ndarray]:
    """Blocks (rows, in capture order) × unit position within the block, NaN-padded."""
    blocks: dict[str, list[int]] = {}
    for i, blk in enumerate(st.blocks_of_units):
        blocks.setdefault(blk, []).append(i)
    width = max(len(v) for v in blocks.values())
    mat = np.full((len(blocks), width), np.nan)
    for r, idx in enumerate(blocks.values()):
        mat[r, : len(idx)] = st.t[idx]
    return list(blocks), mat


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def attention_width(st: LayoutStats) -> int | None:
    """In ``slices16``, the number of attention slices per block (the joint blocks' width):
    single-block slices from there on are MLP channels. None for other layouts."""
    if st.layout != "slices16":
        return None
    joint = [int(u.rsplit(".s", 1)[1]) for u in st.units if u.startswith("joint") and ".s" in u]
    return max(joint) + 1 if joint else None


def block_positions(st: LayoutStats) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's (row, column) in :func:`block_matrix`."""
    rows: dict[str, int] = {}
    filled: dict[str, int] = {}
    r, c = [], []
    for blk in st.blocks_of_units:
        r.append(rows.setdefault(blk, len(rows)))
        c.append(filled.get(blk, 0))
        filled[blk] = c[-1] + 1
    return np.array(r), np.array(c)


def heatmap(st: LayoutStats, path: pathlib.Path) -> None:
    names, mat = block_matrix(st)
    fin = np.abs(mat[np.isfinite(mat)])
    lim = float(np.percentile(fin, 99)) if fin.size else 1.0
    lim = max(lim, st.thresholds[0], 1e-9)
    fig = _new_figure(10, 1.5 + 0.22 * len(names))
    ax = fig.add_subplot()
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")
    im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", interpolation="nearest", cmap=cmap, vmin=-lim, vmax=lim)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.xaxis.set_major_locator(_integer_ticks())
    hits = np.flatnonzero(np.asarray(st.p_fwer) < 0.05)  # NaN: never a hit
    if hits.size:
        rows, cols = block_positions(st)
        ax.scatter(cols[hits], rows[hits], s=10 if mat.shape[1] > 40 else 22, marker="o", facecolors="none",
                   edgecolors="k", linewidths=0.8, label=f"p_fwer < 0.05 ({hits.size:,} units)")
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, borderaxespad=0.1)
    attention = attention_width(st)
    if attention is not None and attention < mat.shape[1]:  # slices16: where single blocks' MLP channels begin
        ax.axvline(attention - 0.5, color="k", lw=1.2)
        ax.set_xlabel(f"unit index within block (single blocks: right of the black line, index ≥ {attention}, "
                      "are MLP channels, not attention)")
    else:
        ax.set_xlabel("unit index within block")
    ax.set_title(f"{st.layout}: per-unit paired t (grey: untested or padding; circled: p_fwer < 0.05)", fontsize=9,
                 loc="right")
    bar = fig.colorbar(im, ax=ax, label=f"t (colour clipped at ±{lim:.3g})", shrink=0.8, extend="both")
    ticks = [t for t in bar.get_ticks() if abs(t) < 0.8 * lim]
    bar.set_ticks(sorted({*ticks, -lim, lim}), labels=[f"{t:.3g}" for t in sorted({*ticks, -lim, lim})])
    _save(fig, path)


def null_histogram(st: LayoutStats, path: pathlib.Path) -> None:
    abs_t = np.abs(st.t)
    k = len(st.thresholds)
    fig = _new_figure(4.2 * k, 3.4)
    for j, thr in enumerate(st.thresholds):
        ax = fig.add_subplot(1, k, j + 1)
        null = st.null_counts[:, j]
        observed = int(np.count_nonzero(abs_t[np.isfinite(abs_t)] > thr))
        hi = int(null.max())
        bins = np.arange(0, hi + 2) - 0.5 if hi < 60 else 40
        heights, _, _ = ax.hist(null, bins=bins, color="#7a8ca8", zorder=1)
        p99 = float(np.percentile(null, 99))
        right = max(hi, p99) * 1.15 + 1
        on_axis = observed <= right * 3
        if on_axis:
            ax.axvline(observed, color="#c0392b", lw=2.5, zorder=2)
            ax.set_xlim(-0.5, max(right, observed * 1.05 + 1))
        else:  # keep the null readable; the observed count is off to the right
            ax.set_xlim(-0.5, right)
        # drawn over the observed line, dashed, so equal values both show
        ax.axvline(p99, color="k", ls=(0, (3, 2)), lw=1.2, zorder=3)
        ax.set_ylim(0, max(heights.max(), 1) * 1.45)  # headroom: the key never covers a bar or a line's top
        note = "every pattern: 0 units" if hi == 0 else f"null max = {hi:,}"
        key = (f"observed = {observed:,}{'' if on_axis else ' (off the axis →)'}\n"
               f"null p99 = {p99:.4g} (dashed)\n{note}")
        ax.text(0.98, 0.97, key, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="#222",
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#c0392b" if observed > p99
                      else "#999", "alpha": 0.95}, zorder=4)
        ax.set_xlabel(f"units with |t| > {thr:g}")
        ax.set_ylabel("sign-flip patterns")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.yaxis.set_major_locator(_integer_ticks())
    how = "exact enumeration" if st.exact else "random sign flips"
    fig.suptitle(f"{st.layout}: null counts over {st.flips_used} patterns ({how}); red: observed", fontsize=9)
    _save(fig, path)


def split_scatter(st: LayoutStats, path: pathlib.Path) -> None:
    fig = _new_figure(5.0, 4.6)
    ax = fig.add_subplot()
    if st.split_example is None:
        ax.text(0.5, 0.5, st.split_note or "no split-half data", ha="center", va="center", wrap=True)
        ax.set_axis_off()
    else:
        t1, t2 = st.split_example
        ok = np.isfinite(t1) & np.isfinite(t2)
        ax.scatter(t1[ok], t2[ok], s=8, alpha=0.75, color="#1f4e79", rasterized=True, linewidths=0)
        lim = float(np.abs(np.concatenate([t1[ok], t2[ok]])).max()) * 1.05 if ok.any() else 1.0
        ax.plot([-lim, lim], [-lim, lim], color="#c0392b", lw=0.8, ls="--", label="y = x")
        r_med = float(np.nanmedian(st.split_r))
        r_this = float(np.corrcoef(t1[ok], t2[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        ax.set_title(f"{st.layout}: t in two halves of the pairs\nmedian r over {st.split_r.size} splits = {r_med:.3f}\n"
                     f"shown: the split closest to it, r = {r_this:.3f}", fontsize=8)
        ax.set_xlabel("t, half 1")
        ax.set_ylabel("t, half 2")
        ax.axhline(0, color="#999", lw=0.5)
        ax.axvline(0, color="#999", lw=0.5)
        ax.legend(fontsize=7, loc="upper left")
    _save(fig, path)


def figure_files(name: str) -> dict[str, str]:
    """A layout's figures: {kind: path relative to the run folder}."""
    return {"heatmap": f"{FIGURES}/{name}_t_heatmap.png", "null": f"{FIGURES}/{name}_null_counts.png",
            "split_half": f"{FIGURES}/{name}_split_half.png"}


def trajectory_files(name: str) -> dict[str, str]:
    """A layout family's figures across the trajectory: {kind: path relative to the run folder}."""
    return {"steps_blocks": f"{FIGURES}/{name}_steps_blocks.png", "steps_units": f"{FIGURES}/{name}_steps_units.png"}


def existing_figures(run_dir, names, families) -> dict[str, dict[str, str]]:
    """The figures a previous report drew for these layouts and families, where all of a
    layout's files are there: a report that changes no statistic need not draw them again."""
    run_dir = pathlib.Path(run_dir)
    found = {name: figure_files(name) for name in names}
    found.update({f"{name}@trajectory": trajectory_files(name) for name in families})
    return {k: rel for k, rel in found.items() if all((run_dir / f).is_file() for f in rel.values())}


def write_figures(run_dir, layouts: dict[str, LayoutStats]) -> dict[str, dict[str, str]]:
    """Write every figure; return layout → {kind: path relative to the run folder}."""
    run_dir = pathlib.Path(run_dir)
    out: dict[str, dict[str, str]] = {}
    for name, st in layouts.items():
        rel = figure_files(name)
        heatmap(st, run_dir / rel["heatmap"])
        null_histogram(st, run_dir / rel["null"])
        split_scatter(st, run_dir / rel["split_half"])
        out[name] = rel
    return out


STIMULI = f"{FIGURES}/stimuli.png"
THUMBS = 8


def stimulus_sheet(run_dir, pairs, images: dict) -> str | None:
    """``figures/stimuli.png``: the conditioning images as the model saw them, as thumbnails
    (the one reference image, or the first pairs' A and B), written when the run loads
    them; the card shows it. None when the probe has no images."""
    cells = []
    for p in pairs:
        for side, stim in zip("AB", p.stimuli()):
            if stim.image is not None and stim.image in images:
                label = f"{p.id} {side}"
                if all(c[0] is not images[stim.image][0] for c in cells):
                    cells.append((images[stim.image][0], label))
        if len(cells) >= THUMBS:
            break
    if not cells:
        return None
    cells = cells[:THUMBS]
    single = len(cells) == 1
    side = 3.2 if single else 1.6
    shown = [p for p in pairs[:3]]
    fig = _new_figure(max(side * len(cells), 6.4), side + 0.5 + 0.16 * (2 * len(shown) + 1))
    grid = fig.add_gridspec(2, len(cells), height_ratios=[side, 0.16 * (2 * len(shown) + 1)])
    for k, (img, label) in enumerate(cells):
        ax = fig.add_subplot(grid[0, k])
        thumb = img.copy()
        thumb.thumbnail((320, 320) if single else (160, 160))
        ax.imshow(np.asarray(thumb))
        if single and len(pairs) > 1:
            label = f"the reference image, in every pass ({img.width}×{img.height} px as the model saw it)"
        ax.set_title(label, fontsize=7)
        ax.set_axis_off()
    caption = fig.add_subplot(grid[1, :])
    caption.set_axis_off()
    lines = [f"{len(pairs)} pairs; the first {len(shown)}:" if len(pairs) > len(shown) else f"{len(pairs)} pairs:"]
    for p in shown:
        for side_name, stim in zip("AB", p.stimuli()):
            text = " ".join(str(stim.prompt).split())
            lines.append(f"{p.id} {side_name}: {text[:110] + '…' if len(text) > 110 else text}")
    caption.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=7, family="monospace", wrap=True)
    _save(fig, pathlib.Path(run_dir) / STIMULI)
    return STIMULI


def trajectory_figures(run_dir, name: str, fam: dict) -> dict[str, str]:
    """``figures/<layout>_steps_blocks.png`` (max |t| per block at each captured step) and
    ``figures/<layout>_steps_units.png`` (t over the steps of the top units by |t|)."""
    from ..stats.engine import block_of

    run_dir = pathlib.Path(run_dir)
    steps, t, units = fam["steps"], fam["t"], fam["units"]
    blocks = list(dict.fromkeys(block_of(u) for u in units))
    col = np.array([blocks.index(block_of(u)) for u in units])
    mat = np.full((len(steps), len(blocks)), np.nan)
    for k in range(len(steps)):
        for j in range(len(blocks)):
            vals = np.abs(t[k, col == j])
            vals = vals[np.isfinite(vals)]
            mat[k, j] = vals.max() if vals.size else np.nan
    rel = trajectory_files(name)
    fig = _new_figure(min(2 + 0.35 * len(blocks), 14), 1.5 + 0.25 * len(steps))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_xticks(range(len(blocks)), blocks, rotation=90, fontsize=6)
    ax.set_yticks(range(len(steps)), [str(s) for s in steps], fontsize=7)
    ax.set_ylabel("denoising step")
    ax.set_title(f"{name}: max |t| per block and step", fontsize=9)
    fig.colorbar(im, ax=ax, label="max |t|", shrink=0.8)
    _save(fig, run_dir / rel["steps_blocks"])
    fig = _new_figure(5.5, 3.6)
    ax = fig.add_subplot()
    for u in fam["summary"]["top_units"]:
        ax.plot(steps, u["t"], marker="o", ms=3, lw=1, label=u["unit"])
    ax.axhline(0, color="#999", lw=0.5)
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel("denoising step")
    ax.set_ylabel("paired t")
    ax.set_title(f"{name}: the top units by |t| over the trajectory", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    _save(fig, run_dir / rel["steps_units"])
    return {**rel, "clusters": cluster_figure(run_dir, name, fam)}


CLUSTER_ROWS = 40


def cluster_figure(run_dir: pathlib.Path, name: str, fam: dict) -> str:
    """``figures/<layout>_clusters.png``: t of units × captured steps, each significant
    cluster (p_fwer < 0.05) outlined. Rows: the units with a significant cluster, largest
    |mass| first, else the top units by |t| (at most CLUSTER_ROWS)."""
    from matplotlib.patches import Rectangle

    steps, t, units = fam["steps"], fam["t"], fam["units"]
    sig = sorted((c for c in fam["clusters"]["clusters"] if c[4] < 0.05), key=lambda c: -abs(c[3]))
    rows = list(dict.fromkeys(c[0] for c in sig))[:CLUSTER_ROWS]
    if not rows:
        rows = [units.index(u["unit"]) for u in fam["summary"]["top_units"]]
    mat = t[:, rows].T
    lim = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    fig = _new_figure(2.5 + 0.3 * len(steps), 1.2 + 0.18 * len(rows))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", interpolation="nearest", cmap="RdBu_r",
                   vmin=-lim, vmax=lim)
    for u, a, b, _, _ in sig:
        if u in rows:
            ax.add_patch(Rectangle((a - 0.5, rows.index(u) - 0.5), b - a + 1, 1, fill=False, ec="k", lw=1.5))
    ax.set_xticks(range(len(steps)), [str(s) for s in steps], fontsize=7)
    ax.set_yticks(range(len(rows)), [units[u] for u in rows], fontsize=6)
    ax.set_xlabel("captured step")
    what = "significant clusters outlined" if sig else "no significant cluster; top units by |t|"
    ax.set_title(f"{name}: t per unit and step ({what})", fontsize=8)
    fig.colorbar(im, ax=ax, label="paired t", shrink=0.8)
    rel = f"{FIGURES}/{name}_clusters.png"
    _save(fig, run_dir / rel)
    return rel
