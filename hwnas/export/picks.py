"""`--pick` expressions: which trial of a run's Pareto front to export."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwnas.export.errors import PickError

if TYPE_CHECKING:
    from hwnas.storage import Run, Trial

PICK_FORMS = "knee, best-accuracy, latency<=X (ms), index=N (N-th front point by latency, from 0)"
ACCURACY = "accuracy"
LATENCY = "latency_ms"
_LATENCY_RE = re.compile(r"^latency\s*<=\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:ms)?$")
_INDEX_RE = re.compile(r"^index\s*=\s*(-?[0-9]+)$")


@dataclass(frozen=True)
class Pick:
    """A parsed pick: `kind` is knee, best-accuracy, latency or index; `value` the bound or index."""

    kind: str
    value: float | int | None = None

    def __str__(self) -> str:
        if self.kind == "latency":
            return f"latency<={self.value:g}"
        if self.kind == "index":
            return f"index={self.value}"
        return self.kind


def parse_pick(text: str) -> Pick:
    """Parse a pick expression; unknown forms list the valid ones."""
    t = (text or "").strip().lower()
    if t in ("knee", "best-accuracy"):
        return Pick(t)
    m = _LATENCY_RE.match(t)
    if m:
        bound = float(m.group(1))
        if not math.isfinite(bound) or bound <= 0:
            raise PickError(f"pick {text!r}: the latency bound must be a positive number of ms")
        return Pick("latency", bound)
    m = _INDEX_RE.match(t)
    if m:
        index = int(m.group(1))
        if index < 0:
            raise PickError(f"pick {text!r}: index must be >= 0 (0 is the fastest front point)")
        return Pick("index", index)
    raise PickError(f"unknown pick {text!r}; valid forms: {PICK_FORMS}")


def _need(run: Run, name: str, pick: Pick) -> None:
    if name not in [o.name for o in run.objectives]:
        have = ", ".join(o.name for o in run.objectives)
        raise PickError(
            f"pick {pick} needs the objective {name!r}, but run {run.name} optimised {have}; "
            f"use {'index=N or knee' if name == ACCURACY else 'knee or best-accuracy'}"
        )


def select_trial(run: Run, pick: Pick | str) -> Trial:
    """The trial of `run`'s Pareto front that `pick` selects."""
    if isinstance(pick, str):
        pick = parse_pick(pick)
    front = run.pareto_front()
    if not front:
        raise PickError(
            f"run {run.name} has no COMPLETE trials, so no Pareto front to pick from; "
            "let the search finish some trials or export one arch with --space/--arch"
        )
    if pick.kind == "knee":
        knee = run.knee()
        if knee is None:  # pragma: no cover - a non-empty front always has a knee
            raise PickError(f"run {run.name} has no knee point; use index=N")
        return knee
    if pick.kind == "best-accuracy":
        _need(run, ACCURACY, pick)
        return max(front, key=lambda t: (t.values[ACCURACY], -t.values.get(LATENCY, 0.0), -t.number))
    _need(run, LATENCY, pick)
    by_latency = sorted(front, key=lambda t: (t.values[LATENCY], t.number))
    if pick.kind == "latency":
        ok = [t for t in by_latency if t.values[LATENCY] <= float(pick.value)]  # type: ignore[arg-type]
        if not ok:
            fastest = by_latency[0].values[LATENCY]
            raise PickError(
                f"no front point of run {run.name} has latency_ms <= {pick.value:g} "
                f"(the fastest predicts {fastest:.4g} ms); raise the bound"
            )
        if ACCURACY in [o.name for o in run.objectives]:
            return max(ok, key=lambda t: (t.values[ACCURACY], -t.values[LATENCY]))
        return ok[-1]  # without accuracy: the slowest (largest) net within the budget
    index = int(pick.value)  # type: ignore[arg-type]
    if index >= len(by_latency):
        raise PickError(
            f"pick index={index} is out of range: run {run.name}'s front has {len(by_latency)} points "
            f"(index 0..{len(by_latency) - 1})"
        )
    return by_latency[index]
