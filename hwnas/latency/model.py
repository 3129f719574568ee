"""The latency model, written once: its terms, their coefficients (`Calibration`) and the calibration forms.

Calibrated latency = drift x sum over `TERMS` of coefficient x feature. Tables evaluate it per arch
(`arch_ms` on `arch_features`, floats); the DNAS cost evaluates it per candidate block (`block_ms`,
`switch_ms`) and takes the exact expectation in torch; `fit_columns` gives the calibration fit the
same features. Adding a term: a `Calibration` field and a `TERMS` line; adding a form: a `FORMS` line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwnas.errors import ConfigError, HwnasError
from hwnas.fileio import typed

KILO = 1000.0


@dataclass(frozen=True)
class Calibration:
    """The coefficients of the latency model (see `TERMS`): latency_ms = scale * sum(block values)
    + per_block_ms * blocks + offset_ms + alone_ms_per_kelem * (boundary kilo-elements the blocks
    converted when timed alone) + switch_ms_per_kelem * (kilo-elements the network reorders where
    neighbours' layouts differ).

    Every candidate form maps onto these numbers; `form` names the one cross-validation chose
    (e.g. `overhead`: each block's measurement carries one per-inference overhead `overhead_ms`, the
    whole network only one, so per_block_ms = -scale * overhead_ms and offset_ms = overhead_ms;
    `layout` adds the two layout terms, see hwnas.devices.layout).
    """

    scale: float = 1.0
    per_block_ms: float = 0.0
    offset_ms: float = 0.0
    n: int = 0  # end-to-end measurements it was fitted on (0: identity)
    fitted_on: list[str] = field(default_factory=list)
    form: str = ""  # chosen candidate form ("" in schema v1 tables)
    overhead_ms: float | None = None  # measured per-inference overhead (an identity model)
    cv_mape: float | None = None  # leave-one-out MAPE (%) of the chosen form
    candidates: dict[str, float] = field(default_factory=dict)  # form -> leave-one-out MAPE (%)
    alone_ms_per_kelem: float = 0.0
    switch_ms_per_kelem: float = 0.0

    def describe(self) -> str:
        """One line: form and coefficients."""
        if self.n == 0:
            return "uncalibrated (sum of block medians)"
        text = (f"form={self.form or 'linear'} scale={self.scale:.4f} per_block_ms={self.per_block_ms:+.5f} "
                f"offset_ms={self.offset_ms:+.5f} n={self.n}")
        if self.alone_ms_per_kelem or self.switch_ms_per_kelem:
            text += (f" alone_ms_per_kelem={self.alone_ms_per_kelem:+.6f}"
                     f" switch_ms_per_kelem={self.switch_ms_per_kelem:+.6f}")
        if self.overhead_ms is not None:
            text += f" overhead_ms={self.overhead_ms:.5f}"
        if self.cv_mape is not None:
            text += f" cv_mape={self.cv_mape:.2f}%"
        return text

    def apply(self, sum_ms: float, n_blocks: int, alone_kelems: float = 0.0, switch_kelems: float = 0.0) -> float:
        """The calibrated latency of an arch with these features (kilo-elements already in kilo)."""
        return arch_ms(self, {"scale": sum_ms, "per_block_ms": n_blocks, "offset_ms": 1,
                              "alone_ms_per_kelem": alone_kelems, "switch_ms_per_kelem": switch_kelems})

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration", error: type[HwnasError] = HwnasError) -> Calibration:
        if not isinstance(data, dict):
            raise error(f"{where} must be a mapping, got {data!r} ({type(data).__name__})")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise error(f"{where} has unknown keys {sorted(unknown)}")
        kinds = {"n": int, "fitted_on": list, "form": str, "overhead_ms": float, "cv_mape": float,
                 "candidates": dict, **{t.coef: float for t in TERMS}}
        optional = {"overhead_ms", "cv_mape"}
        try:
            values = {k: v if v is None and k in optional else typed(v, kinds[k], k, where) for k, v in data.items()}
        except ConfigError as exc:
            raise error(str(exc)) from None
        bad = [t.coef for t in TERMS if t.coef in values and not math.isfinite(values[t.coef])]
        if bad:
            raise error(f"{where}: {bad[0]} must be finite, got {values[bad[0]]!r}")
        if values.get("scale", 1.0) <= 0:  # a latency would fall as blocks get slower, or go negative
            raise error(f"{where}: scale must be > 0, got {values['scale']!r}; recalibrate the table "
                        "(`hwnas profile ... --recalibrate`) or set scale: 1.0")
        return cls(**values)


@dataclass(frozen=True)
class Term:
    """coefficient (a `Calibration` field) x feature. `per`: "block" (the feature of each block, summed
    over the arch's blocks), "arch" (1, once) or "switch" (elements reordered where neighbouring blocks'
    layouts differ). `layout`: counted only where every block involved recorded its layouts. The feature
    is divided by `unit` (elements -> kilo-elements)."""

    coef: str
    per: str
    feature: Callable[[Any, str], float] | None = None  # (TableEntry, statistic) -> value, for per="block"
    unit: float = 1.0
    layout: bool = False


TERMS: tuple[Term, ...] = (
    Term("scale", "block", lambda entry, statistic: entry.value(statistic)),
    Term("per_block_ms", "block", lambda entry, statistic: 1),
    Term("offset_ms", "arch"),
    Term("alone_ms_per_kelem", "block", lambda entry, statistic: entry.boundary_elems or 0, KILO, layout=True),
    Term("switch_ms_per_kelem", "switch", unit=KILO, layout=True),
)


def arch_features(entries: Sequence[Any], input_elems: Sequence[int], statistic: str, chain: bool,
                  layouts: bool = True) -> dict[str, float]:
    """Per term (by coefficient) the feature of an arch whose blocks have table `entries` in order, in the
    term's unit (`input_elems`: elements entering each block, batch included). Layout terms are 0 unless
    every entry recorded its layouts (and `layouts`); switches count between consecutive blocks of chain
    spaces."""
    with_layouts = layouts and all(e.layouts is not None for e in entries)
    out: dict[str, float] = {}
    for t in TERMS:
        if t.layout and not with_layouts:
            raw = 0
        elif t.per == "block":
            raw = sum(t.feature(e, statistic) for e in entries)  # type: ignore[misc]
        elif t.per == "arch":
            raw = 1
        else:
            raw = sum(elems for left, right, elems in zip(entries, entries[1:], input_elems[1:])
                      if left.layouts[1] != right.layouts[0]) if chain else 0
        out[t.coef] = raw / t.unit
    return out


def arch_ms(cal: Calibration, features: Mapping[str, float]) -> float:
    """The calibrated latency of an arch: sum over terms of coefficient x feature (`arch_features`, in
    the term's unit), in `TERMS` order; terms whose coefficient is 0 are skipped."""
    total = 0.0
    for t in TERMS:
        coef = getattr(cal, t.coef)
        if coef:
            total = total + coef * features[t.coef]
    return total


def block_ms(cal: Calibration, entry: Any, statistic: str, layouts: bool) -> float:
    """One block's share of the calibrated latency (its per-block terms, coefficient x feature / unit),
    without drift: with `fixed_ms` and the `switch_ms` of each switch, the shares sum to `arch_ms`."""
    total = 0.0
    for t in TERMS:
        if t.per == "block" and (layouts or not t.layout):
            total = total + getattr(cal, t.coef) * t.feature(entry, statistic) / t.unit  # type: ignore[misc]
    return total


def fixed_ms(cal: Calibration) -> float:
    """The per-arch terms (counted once, whatever the blocks)."""
    return sum(getattr(cal, t.coef) for t in TERMS if t.per == "arch")


def switch_ms(cal: Calibration, elems: int, factor: float = 1.0) -> float:
    """`factor` x the latency of reordering `elems` elements where neighbouring layouts differ."""
    return sum(factor * getattr(cal, t.coef) * elems / t.unit for t in TERMS if t.per == "switch")


@dataclass(frozen=True)
class Form:
    """A candidate calibration form: y = scale x (block sum) + the `free` terms, fitted by least squares.
    `net`: the block sum is taken net of the measured per-inference overhead o (each block's timing
    carries one o, the whole network only one), which fixes per_block_ms = -scale * o and, unless
    offset_ms is free, offset_ms = o. Terms in `optional` are dropped when their feature does not vary."""

    free: tuple[str, ...] = ()
    net: bool = False
    optional: tuple[str, ...] = ()


FORMS: dict[str, Form] = {  # in the order ties are broken (then by fewer coefficients)
    "scale": Form(),
    "scale+offset": Form(("offset_ms",)),
    "overhead": Form(net=True),
    "overhead+offset": Form(("offset_ms",), net=True),
    # blocks timed alone paid layout conversions at their boundaries that a network pays only where
    # neighbours' layouts differ (hwnas.devices.layout)
    "layout": Form(("alone_ms_per_kelem", "switch_ms_per_kelem", "offset_ms"), net=True,
                   optional=("switch_ms_per_kelem",)),
    "per_block": Form(("per_block_ms", "offset_ms")),
}


def fit_columns(form: Form, features: Mapping[str, np.ndarray],
                overhead_ms: float | None) -> tuple[list[str], list[np.ndarray], np.ndarray] | None:
    """(terms, regressor columns, fixed part of the target) of `form` over archs with `features` (per
    term, in the units of `arch_ms`), or None when the form cannot be tried (no overhead for a net form,
    a feature not given)."""
    s = np.asarray(features["scale"], dtype=float)
    if form.net and overhead_ms is None:
        return None
    if any(features.get(t) is None for t in form.free):
        return None
    first = s - np.asarray(features["per_block_ms"], dtype=float) * overhead_ms if form.net else s
    terms = ["scale"] + [t for t in form.free if t not in form.optional or np.ptp(features[t]) > 0]
    cols = [first] + [np.asarray(features[t], dtype=float) for t in terms[1:]]
    fixed = np.full_like(s, overhead_ms) if form.net and "offset_ms" not in form.free else np.zeros_like(s)
    return terms, cols, fixed


def coefficients(form: Form, terms: list[str], coef: np.ndarray, overhead_ms: float | None) -> dict[str, float]:
    """`Calibration` coefficients of a fitted form (`terms` as `fit_columns` gave them)."""
    out = {t: float(c) for t, c in zip(terms, coef)}
    if form.net:
        out["per_block_ms"] = -out["scale"] * float(overhead_ms)  # type: ignore[arg-type]
        out.setdefault("offset_ms", float(overhead_ms))  # type: ignore[arg-type]
    return out
