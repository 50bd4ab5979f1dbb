"""lim_selection.py's plots (matplotlib, imported only when plotting): the paper's Fig. 2b trajectories, the score
histogram, the methods' overlap, the stability and threshold-sweep curves. Every PNG is written whole or not at all."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from limr.jsonio import atomic_write
from limr.paper import LINEAR_THETA, THETA
from limr.stability import jaccard


def has_matplotlib() -> bool:
    """Plots are optional: matplotlib is the `plot` extra."""
    return importlib.util.find_spec("matplotlib") is not None


def save_png(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_write(path, "wb") as f:  # like every output: whole or not at all
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def plot_trajectories(path: Path, complete: dict, reference: list[float], scores: dict, chosen: set, ref_name: str):
    """The paper's Fig. 2b: a few selected and rejected prompts' accuracy curves against the reference curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = sorted(scores, key=lambda pid: -scores[pid])
    kept, rejected = [p for p in ranked if p in chosen], [p for p in ranked if p not in chosen]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    epochs = range(1, len(reference) + 1)
    for group, color in ((kept, "tab:green"), (rejected, "tab:red")):
        examples = sorted({0, len(group) // 2, len(group) - 1}) if group else []  # the best, median and worst
        for pid in (group[i] for i in examples):
            ax.plot(
                epochs,
                complete[pid],
                color=color,
                alpha=0.6,
                lw=1,
                label=f"{pid if len(pid) <= 12 else pid[:8]} (s={scores[pid]:.2f})",
            )
    ax.plot(epochs, reference, color="black", lw=2.5, label=ref_name)
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(-0.03, 1.03), title="selected (green) vs rejected (red) prompts")
    ax.legend(fontsize=7, loc="lower right")
    save_png(fig, path)


def plot_histogram(path: Path, scores: dict, cutoff: float | None, method: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(list(scores.values()), bins=60, color="tab:blue")
    if cutoff is not None:
        ax.axvline(cutoff, color="tab:red", ls="--", label=f"cut-off {cutoff:g}")
        ax.legend()
    ax.set(xlabel=f"{method} score", ylabel="prompts", title=f"{len(scores)} scored prompts")
    save_png(fig, path)


def plot_overlap(path: Path, chosen: dict[str, list[str]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(chosen)
    matrix = [[jaccard(chosen[a], chosen[b]) for b in names] for a in names]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    fig.colorbar(im, label="Jaccard overlap")
    ax.set_title(f"overlap of the selections ({len(next(iter(chosen.values())))} prompts each)")
    save_png(fig, path)


def plot_stability(path: Path, rows: list[dict], method: str, targets=()):
    """Jaccard and Spearman against the full selection, and the selected count, as the epochs used grow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for mode, style in (("same size", "-"), ("threshold", "--")):
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        epochs = [r["epochs"] for r in mine]
        top.plot(epochs, [r["jaccard"] for r in mine], style, color="tab:blue", label=f"Jaccard, {mode}")
        bottom.plot(epochs, [r["selected"] for r in mine], style, color="tab:green", label=f"selected, {mode}")
    same = [r for r in rows if r["mode"] == "same size"]
    rho = [(r["epochs"], r["spearman"]) for r in same if r["spearman"] is not None]
    top.plot([e for e, _ in rho], [v for _, v in rho], ":", color="tab:orange", label="Spearman of the scores")
    for target in targets:
        top.axhline(target, color="grey", lw=0.8)
    if same:  # two random draws of this size overlap this much: the floor the Jaccard curves start from
        top.axhline(same[0]["jaccard_by_chance"], color="tab:red", lw=0.8, ls=":", label="Jaccard by chance")
    top.set(ylabel="agreement with all epochs", ylim=(-0.05, 1.05), title=f"{method}: first K epochs vs all")
    bottom.set(xlabel="epochs used (K)", ylabel="prompts selected")
    top.legend(fontsize=8, loc="lower right")
    bottom.legend(fontsize=8)
    save_png(fig, path)


def plot_sweep(path: Path, rows: list[dict], scored: int):
    """Prompts kept against θ, the paper's operating points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    thetas = [r["theta"] for r in rows]
    for method, theta, color in (("lim", THETA, "tab:blue"), ("linear", LINEAR_THETA, "tab:orange")):
        if method not in rows[0]:
            continue
        ax.plot(thetas, [r[method] for r in rows], color=color, marker=".", label=method)
        kept = next(r[method] for r in rows if r["theta"] == theta)
        ax.plot([theta], [kept], "o", color=color, markersize=9, markerfacecolor="none")
        ax.annotate(f"paper: θ={theta:g}, {kept}", (theta, kept), textcoords="offset points", xytext=(6, 6))
    ax.set(xlabel="threshold θ (keep score >= θ)", ylabel="prompts kept", ylim=(0, scored * 1.05),
           title=f"selection size against threshold ({scored} scored prompts)")  # fmt: skip
    ax.legend()
    save_png(fig, path)


def plot_stopping(path: Path, result: dict):
    """Each epoch's Jaccard with the one before, the rule's level, and the epoch where it stops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    rows = [r for r in result["rows"] if r["jaccard_previous"] is not None]
    ax.plot([r["epoch"] for r in rows], [r["jaccard_previous"] for r in rows], ".-", label="Jaccard with previous")
    ax.axhline(result["rule"]["level"], color="grey", lw=0.8, label=f"level {result['rule']['level']}")
    if result["stop_epoch"] is not None:
        ax.axvline(result["stop_epoch"], color="tab:red", ls="--", label=f"stop: epoch {result['stop_epoch']}")
    ax.set(xlabel="epoch", ylabel="Jaccard", ylim=(-0.05, 1.05),
           title=f"top {result['num_samples']} by LIM: when stage 1 could stop")  # fmt: skip
    ax.legend(fontsize=8, loc="lower right")
    save_png(fig, path)


def write_plots(
    out: Path,
    method: str,
    reference,
    complete,
    scores,
    chosen: set,
    cutoff,
    compared,
    stability=None,
    sweep=None,
    stability_targets=(),
) -> list:
    """Every plot the run has data for, beside `out` (out.stem.<plot>.png); reference: the curve scores follow."""
    if not has_matplotlib():
        print("warning: matplotlib is not installed; no plots (pip install matplotlib, or pass --no_plots)")
        return []
    beside = out.with_name  # limr.json -> limr.<plot>.png
    if scores and complete:
        name = "linear reference" if method == "linear" else "average curve (r_avg)"
        plot_trajectories(beside(f"{out.stem}.trajectories.png"), complete, reference, scores, chosen, name)
    if scores:
        plot_histogram(beside(f"{out.stem}.scores.png"), scores, cutoff, method)
    if compared:
        plot_overlap(beside(f"{out.stem}.overlap.png"), compared)
    if stability:
        plot_stability(beside(f"{out.stem}.stability.png"), stability, method, stability_targets)
    if sweep:
        plot_sweep(beside(f"{out.stem}.sweep.png"), sweep, len(complete))
    return [f"wrote plots beside {out}"]
