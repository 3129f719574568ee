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
