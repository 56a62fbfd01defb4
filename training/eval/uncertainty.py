"""Uncertainty of the figures: bootstrap 95% intervals and the paired comparison of two score files.

* Interval: the examples of each stratum (``tables.Table``) are resampled with replacement ``samples`` times
  (seeded); the interval is the 2.5 and 97.5 percentiles of each figure over the resamples.
* Paired comparison of A and B on the same examples (matched by id; examples present in one only are counted
  and left out): the difference A - B, its bootstrap interval (the same resampled examples for both), and a
  two-sided p-value from a paired permutation test (each example's two outcomes swapped at random;
  p = (1 + #{|d*| >= |d|}) / (1 + permutations)).
"""

from __future__ import annotations

import numpy as np

from .tables import Strata, Table

BOOTSTRAP_SAMPLES = 1000
SEED = 0


def _take(strata: Strata, picks: dict[str, np.ndarray]) -> Strata:
    return {
        name: {part: {k: v[picks[name]] for k, v in s[part].items()} if part != "ids" else s["ids"][picks[name]]
               for part in s}
        for name, s in strata.items()
    }


def _resample(strata: Strata, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: rng.integers(0, len(s["ids"]), len(s["ids"])) for name, s in strata.items()}


def _interval(values: list[dict[str, float]], names: list[str]) -> dict[str, list[float]]:
    out = {}
    for name in names:
        column = np.asarray([v.get(name, np.nan) for v in values], dtype=np.float64)
        if np.isfinite(column).any():
            lo, hi = np.nanpercentile(column, [2.5, 97.5])
            out[name] = [float(lo), float(hi)]
    return out


def bootstrap(table: Table, samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> dict[str, list[float]]:
    """figure -> [low, high], the 95% percentile bootstrap interval."""
    if samples <= 0 or not any(len(s["ids"]) for s in table.strata.values()):
        return {}
    rng = np.random.default_rng(seed)
    figures = table.figures
    values = [table.compute(_take(table.strata, _resample(table.strata, rng))) for _ in range(samples)]
    return _interval(values, list(figures))


def table_doc(table: Table, samples: int = 0, seed: int = SEED) -> dict:
    """A table as JSON: figures, units per stratum, labels, details and (``samples`` > 0) intervals."""
    doc = {"figures": table.figures, "n": table.n, "labels": table.labels, "details": table.details}
    if samples > 0:
        doc |= {"ci95": bootstrap(table, samples, seed), "bootstrap": {"samples": samples, "seed": seed}}
    return doc


def _aligned(a: Table, b: Table) -> tuple[Strata, Strata, dict]:
    """The strata of A and B restricted to the ids both have, in A's order; counts of the others."""
    sa, sb, counts = {}, {}, {}
    for name, st_a in a.strata.items():
        st_b = b.strata.get(name)
        if st_b is None:
            raise ValueError(f"{a.name}: the two score files have different tables ({name} is in one only)")
        index_b = {str(i): j for j, i in enumerate(st_b["ids"])}
        pick_a = np.asarray([j for j, i in enumerate(st_a["ids"]) if str(i) in index_b], dtype=np.int64)
        pick_b = np.asarray([index_b[str(st_a["ids"][j])] for j in pick_a], dtype=np.int64)
        sa[name] = _take({name: st_a}, {name: pick_a})[name]
        sb[name] = _take({name: st_b}, {name: pick_b})[name]
        counts[name] = {"common": len(pick_a), "only_a": len(st_a["ids"]) - len(pick_a),
                        "only_b": len(st_b["ids"]) - len(pick_a)}
    return sa, sb, counts


def _swap(sa: Strata, sb: Strata, rng: np.random.Generator) -> tuple[Strata, Strata]:
    xa, xb = {}, {}
    for name in sa:
        flip = rng.random(len(sa[name]["ids"])) < 0.5
        outs_a, outs_b = {}, {}
        for k in sa[name]["out"]:
            va, vb = sa[name]["out"][k], sb[name]["out"][k]
            outs_a[k], outs_b[k] = np.where(flip, vb, va), np.where(flip, va, vb)
        xa[name] = sa[name] | {"out": outs_a}
        xb[name] = sb[name] | {"out": outs_b}
    return xa, xb


def compare(a: Table, b: Table, samples: int = BOOTSTRAP_SAMPLES, seed: int = SEED) -> dict:
    """Per figure: A, B, A - B, the 95% bootstrap interval of A - B and the permutation p-value."""
    sa, sb, counts = _aligned(a, b)
    fa, fb = a.compute(sa), b.compute(sb)
    names = [n for n in fa if n in fb]
    diff = {n: fa[n] - fb[n] for n in names}
    rng = np.random.default_rng(seed)
    boot, extreme = [], dict.fromkeys(names, 0)
    for _ in range(samples):
        picks = _resample(sa, rng)
        ba, bb = a.compute(_take(sa, picks)), b.compute(_take(sb, picks))
        boot.append({n: ba[n] - bb[n] for n in names})
        pa, pb = _swap(sa, sb, rng)
        ra, rb = a.compute(pa), b.compute(pb)
        for n in names:
            if abs(ra[n] - rb[n]) >= abs(diff[n]) - 1e-9:
                extreme[n] += 1
    ci = _interval(boot, names)
    figures = {
        n: {"a": fa[n], "b": fb[n], "diff": diff[n], "ci95": ci.get(n), "p": (1 + extreme[n]) / (1 + samples)}
        for n in names
    }
    return {"figures": figures, "units": counts, "samples": samples, "seed": seed}
