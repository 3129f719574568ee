"""Plots of a run: all trials in objective space with the Pareto front and the knee highlighted."""

from __future__ import annotations

from pathlib import Path


def plot_pareto(run, path: str | Path, x: str | None = None, y: str | None = None) -> Path:
    """Scatter COMPLETE trials on two objectives (default: the first two), front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objs = {o.name: o for o in run.objectives}
    names = [o.name for o in run.objectives]
    x = x or names[-1] if len(names) > 1 else names[0]
    y = y or names[0]
    done = run.trials("COMPLETE")
    front = run.pareto_front()
    knee = run.knee()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter([t.values[x] for t in done], [t.values[y] for t in done], s=14, c="0.6", label="trials")
    fx = sorted((t.values[x], t.values[y]) for t in front)
    ax.plot([p[0] for p in fx], [p[1] for p in fx], "o-", c="C0", ms=5, label="Pareto front", drawstyle="steps-post"
            if objs[x].direction == "min" and objs[y].direction == "max" else "default")
    if knee is not None:
        ax.scatter([knee.values[x]], [knee.values[y]], s=120, facecolors="none", edgecolors="C3", label="knee")
    for name, setter in ((x, ax.set_xlabel), (y, ax.set_ylabel)):
        o = objs[name]
        setter(f"{name} ({'higher' if o.direction == 'max' else 'lower'} is better)")
    ax.set_title(f"{run.name}: {len(done)} trials, {len(front)} on the front")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_choice_heatmap(layers: list[list[str]], history: list[dict], path: str | Path, title: str = "") -> Path:
    """DNAS: one heatmap per layer of its choice probabilities (rows: candidates) over epochs (columns).

    `layers` are the candidate names of each layer; `history` the per-epoch records with `probs`
    (as stored in a fbnet run's `info.dnas.targets[i].history`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(layers)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n + 1.2, 4.2), sharey=False, squeeze=False)
    image = None
    for i, (ax, names) in enumerate(zip(axes[0], layers)):
        probs = np.array([h["probs"][i] for h in history], dtype=float).T  # candidates x epochs
        image = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"l{i}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_xticks(range(len(history)))
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if i == 0 else [""] * len(names), fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02, pad=0.01, label="choice probability")
    fig.suptitle(title or "choice probabilities per layer over epochs", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
