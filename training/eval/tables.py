"""Per-example records to the published tables: one ``Table`` per suite (and VSR split), vectorised.

A record is one JSON object of a score file (see ``scorefiles``). A suite's records become a ``Table``:
``strata`` of aligned arrays (``ids``; shared ``keys`` such as the instrument or the label; model-dependent
``out`` such as "caption above foil"), and a pure ``compute(strata) -> figures`` in percent. The bootstrap and
the paired comparison (``uncertainty``) resample or swap the rows of the strata and call ``compute`` again, so
every figure, its interval and its comparison come from one function.

Protocols (docs/evaluation.md has the sources):

* VALSE: caption above foil (strict). ``overall`` pools all examples (example-weighted, the companion study's
  number); ``instrument_mean`` averages the instruments (the VALSE paper's number); pieces in ``details``.
* VSR: a true caption is right when p(match) >= 0.5, a false one when p < 0.5 (the companion study's rule);
  ``overall`` and one figure per meta-category; the majority-class baseline in ``baseline``.
* SVO-Probes, official: each (sentence, image) pair classified match when p(match) > 0.5 (the ITM head's
  argmax), pairs deduplicated, accuracy on positives, on negatives and their average (``overall``) over rows
  with exactly one negated part, per part too. ``pairwise`` is the companion study's rule (positive image
  above negative) over all rows, kept under its own name.
* Winoground: text, image, group (strict comparisons); by tag value in details (exact value, as Winoground's
  own statistics script and the companion study filter; ``secondary_tag_any`` splits the comma-separated tag).
* Retrieval: R@1/5/10 both ways from the rank of the best positive, re-ranked (``rerank``) and ITC alone
  (``itc_`` prefix).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .benchmarks import vsr_category

VSR_THRESHOLD = 0.5  # true caption right at p >= 0.5 (companion study); false caption right at p < 0.5
SVO_MATCH = 0.5  # SVO-Probes official: a pair is classified "match" when p(match) > 0.5
RECALL_KS = (1, 5, 10)
WINOGROUND_TAGS = ("collapsed_tag", "num_main_preds", "secondary_tag")

Strata = dict[str, dict[str, dict[str, np.ndarray]]]  # stratum -> {"ids", "keys", "out"} -> name -> array


@dataclass
class Table:
    """One suite's (or VSR split's) figures and what they are computed from."""

    name: str
    strata: Strata
    compute: Callable[[Strata], dict[str, float]]
    labels: dict[str, str] = field(default_factory=dict)  # figure -> what it is
    details: dict = field(default_factory=dict)  # views without intervals (pieces, per relation, baselines)

    @property
    def figures(self) -> dict[str, float]:
        """The figures on all examples."""
        return self.compute(self.strata)

    @property
    def n(self) -> dict[str, int]:
        """Units per stratum."""
        return {k: len(v["ids"]) for k, v in self.strata.items()}


def _stratum(ids: Iterable, keys: dict[str, Iterable] | None = None, out: dict[str, Iterable] | None = None):
    return {
        "ids": np.asarray([str(i) for i in ids]),
        "keys": {k: np.asarray(list(v)) for k, v in (keys or {}).items()},
        "out": {k: np.asarray(list(v)) for k, v in (out or {}).items()},
    }


def _pct(flags: np.ndarray) -> float:
    return float(100.0 * flags.mean()) if len(flags) else float("nan")


def _by_group(flags: np.ndarray, groups: np.ndarray, names: Iterable[str]) -> dict[str, float]:
    return {str(g): _pct(flags[groups == g]) for g in names}


# ---- VALSE ---------------------------------------------------------------------------------------------------


def valse_table(records: list[dict]) -> Table:
    """VALSE: per instrument, the example-weighted ``overall`` and the ``instrument_mean``; pieces in details."""
    instruments = sorted({r["instrument"] for r in records})
    st = _stratum(
        (r["id"] for r in records),
        {"instrument": (r["instrument"] for r in records), "piece": (r.get("piece", "") for r in records)},
        {"correct": (r["caption"] > r["foil"] for r in records)},
    )

    def compute(strata: Strata) -> dict[str, float]:
        s = strata["pairs"]
        per = _by_group(s["out"]["correct"], s["keys"]["instrument"], instruments)
        return per | {"overall": _pct(s["out"]["correct"]), "instrument_mean": float(np.mean(list(per.values())))}

    pieces = sorted({r.get("piece", "") for r in records} - {""})
    details = {
        "pieces": _by_group(st["out"]["correct"], st["keys"]["piece"], pieces),
        "n_per_instrument": {i: int((st["keys"]["instrument"] == i).sum()) for i in instruments},
    }
    labels = {
        "overall": "example-weighted: all examples pooled (the companion study's 'overall')",
        "instrument_mean": "mean of the instruments (the VALSE paper's average)",
    }
    return Table("valse", {"pairs": st}, compute, labels, details)


# ---- VSR -----------------------------------------------------------------------------------------------------


def vsr_correct(scores: np.ndarray, labels: np.ndarray, threshold: float = VSR_THRESHOLD) -> np.ndarray:
    """The companion study's VSR rule: true caption right at p >= threshold, false caption at p < threshold."""
    return np.where(labels == 1, scores >= threshold, scores < threshold)


def vsr_table(records: list[dict], split: str, threshold: float = VSR_THRESHOLD) -> Table:
    """VSR on one split: ``overall`` and one figure per meta-category; per relation and the baseline in details."""
    categories = [r.get("category") or vsr_category(r["relation"]) for r in records]
    labels = np.asarray([int(r["label"]) for r in records])
    st = _stratum(
        (r["id"] for r in records),
        {"category": categories, "relation": (r["relation"] for r in records), "label": labels},
        {"correct": vsr_correct(np.asarray([float(r["score"]) for r in records]), labels, threshold)},
    )
    names = sorted(set(categories))

    def compute(strata: Strata) -> dict[str, float]:
        s = strata["captions"]
        return _by_group(s["out"]["correct"], s["keys"]["category"], names) | {"overall": _pct(s["out"]["correct"])}

    majority = int(labels.mean() >= 0.5) if len(labels) else 1
    details = {
        "baseline": {"majority_class": majority, "accuracy": _pct(labels == majority)},
        "per_relation": _by_group(st["out"]["correct"], st["keys"]["relation"], sorted(set(st["keys"]["relation"]))),
        "threshold": threshold,
        "rule": "true caption right at p >= threshold, false caption at p < threshold",
    }
    return Table(f"vsr_{split}", {"captions": st}, compute, {"overall": "accuracy, all captions"}, details)


# ---- Winoground ----------------------------------------------------------------------------------------------


def winoground_outcomes(s: np.ndarray) -> dict[str, np.ndarray]:
    """Text, image, group success per example; ``s[n, c, i]`` scores caption c with image i."""
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def _tag_values(record: dict, tag: str, split: bool) -> list[str]:
    value = record.get(tag)
    if value in (None, ""):
        return []
    if not split:
        return [str(value).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def winoground_table(records: list[dict]) -> Table:
    """Winoground text, image, group; by tag (collapsed tag, main predicates, secondary tag) in details.

    A tag's group holds the examples whose tag equals that value, as Winoground's ``compute_statistics.py``
    and the companion study filter (``secondary_tag == "Symbolic"``: 28 examples, not the 13 tagged
    ``"Symbolic, Series"`` etc.); ``secondary_tag_any`` counts an example in every value of its comma-separated
    secondary tag (Symbolic 41, Series 31, Pragmatics 24, the counts of the Winoground paper).
    """
    scores = np.asarray([r["scores"] for r in records], dtype=np.float64).reshape(-1, 2, 2)
    outcomes = winoground_outcomes(scores)
    st = _stratum((r["id"] for r in records), {}, outcomes)

    def compute(strata: Strata) -> dict[str, float]:
        return {k: _pct(strata["examples"]["out"][k]) for k in ("text", "image", "group")}

    breakdown: dict[str, dict] = {}
    views = [(tag, tag, False) for tag in WINOGROUND_TAGS] + [("secondary_tag_any", "secondary_tag", True)]
    for view, tag, split in views:
        values = [_tag_values(r, tag, split) for r in records]
        for name in sorted({v for vs in values for v in vs}):
            mask = np.asarray([name in vs for vs in values])
            breakdown.setdefault(view, {})[name] = {k: _pct(o[mask]) for k, o in outcomes.items()} | {
                "n": int(mask.sum())
            }
    return Table("winoground", {"examples": st}, compute, {}, {"by_tag": breakdown} if breakdown else {})


# ---- SVO-Probes ----------------------------------------------------------------------------------------------

SVO_PARTS = ("subj", "verb", "obj")


def _svo_dedup(records: list[dict], side: str, by_part: bool) -> dict:
    """Distinct (sentence, image) pairs of one side among single-negation rows (per part when ``by_part``)."""
    seen: dict[tuple, tuple[str, float]] = {}
    for r in records:
        if r["negated"] not in SVO_PARTS:
            continue
        key = ((r["negated"],) if by_part else ()) + (r["sentence"], r[f"{side}_image"])
        seen.setdefault(key, (r["negated"], float(r[side])))
    ids = ["|".join(map(str, k)) for k in seen]
    parts = [p for p, _ in seen.values()]
    scores = np.asarray([s for _, s in seen.values()])
    right = scores > SVO_MATCH if side == "pos" else ~(scores > SVO_MATCH)
    return _stratum(ids, {"part": parts}, {"correct": right})


def svo_table(records: list[dict], official: bool = True) -> Table:
    """SVO-Probes: the official pos / neg / average (``overall``) per part, and the companion's ``pairwise``."""
    strata = {
        "rows": _stratum(
            (r["id"] for r in records),
            {"negated": (r["negated"] for r in records)},
            {"correct": (r["pos"] > r["neg"] for r in records)},
        )
    }
    if official:
        for side in ("pos", "neg"):
            strata[side] = _svo_dedup(records, side, by_part=False)
            strata[f"{side}_part"] = _svo_dedup(records, side, by_part=True)
    parts = [p for p in SVO_PARTS if any(r["negated"] == p for r in records)]

    def compute(s: Strata) -> dict[str, float]:
        out = {"pairwise": _pct(s["rows"]["out"]["correct"])}
        if "pos" not in s:
            return out
        pos, neg = _pct(s["pos"]["out"]["correct"]), _pct(s["neg"]["out"]["correct"])
        out |= {"overall": (pos + neg) / 2, "pos": pos, "neg": neg}
        for p in parts:
            pp = _pct(s["pos_part"]["out"]["correct"][s["pos_part"]["keys"]["part"] == p])
            pn = _pct(s["neg_part"]["out"]["correct"][s["neg_part"]["keys"]["part"] == p])
            out |= {p: (pp + pn) / 2, f"{p}_pos": pp, f"{p}_neg": pn}
        return out

    rows = strata["rows"]
    negated = sorted(set(rows["keys"]["negated"]))
    details = {"pairwise_by_negated": _by_group(rows["out"]["correct"], rows["keys"]["negated"], negated)}
    labels = {
        "overall": "SVO-Probes official: mean of pos and neg accuracy, single-negation rows, pairs deduplicated",
        "pairwise": "companion study's rule: positive image scored above the negative, all rows",
    }
    if not official:
        del labels["overall"]
    return Table("svo", strata, compute, labels, details)


# ---- retrieval -----------------------------------------------------------------------------------------------


def retrieval_table(records: list[dict], suite: str) -> Table:
    """R@1/5/10 both ways and their mean, re-ranked (plain names) and ITC alone (``itc_`` prefix)."""
    modes = [m for m in ("rerank", "itc") if all(f"rank_{m}" in r for r in records)]
    strata = {
        d: _stratum(
            (r["query"] for r in records if r["direction"] == d),
            {},
            {m: [int(r[f"rank_{m}"]) for r in records if r["direction"] == d] for m in modes},
        )
        for d in ("tr", "ir")
    }

    def compute(s: Strata) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, mode in enumerate(modes):
            prefix = "" if i == 0 else f"{mode}_"
            values = {
                f"{prefix}{d}_r{k}": _pct(s[d]["out"][mode] < k) for d in ("tr", "ir") for k in RECALL_KS
            }
            out |= values | {f"{prefix}r_mean": float(np.mean(list(values.values())))}
        return out

    return Table(suite, strata, compute, {"tr_r1": f"scores: {modes[0]}" if modes else ""})


def _by_mode(records: list[dict]) -> list[tuple[str, list[dict]]]:
    """Records split by score mode, ITM first (the primary one keeps the suite's name)."""
    modes = sorted({r.get("mode", "itm") for r in records}, key=lambda m: (m != "itm", m))
    return [(m, [r for r in records if r.get("mode", "itm") == m]) for m in modes]


def suite_tables(suite: str, records: list[dict], vsr_threshold: float = VSR_THRESHOLD) -> list[Table]:
    """The tables of one suite's records (VSR: one per split; a second score mode gets a ``_<mode>`` suffix)."""
    if not records:
        return []
    if suite not in ("valse", "vsr", "winoground", "svo"):
        return [retrieval_table(records, suite)]
    tables: list[Table] = []
    for i, (mode, rows) in enumerate(_by_mode(records)):
        if suite == "valse":
            found = [valse_table(rows)]
        elif suite == "vsr":
            splits = sorted({r["split"] for r in rows})
            found = [vsr_table([r for r in rows if r["split"] == s], s, vsr_threshold) for s in splits]
        elif suite == "winoground":
            found = [winoground_table(rows)]
        else:
            # the companion study's SVO lines carry no sentence or image: its pairwise rule only
            official = mode == "itm" and all("sentence" in r for r in rows)
            found = [svo_table(rows, official=official)]
        for table in found:
            table.details["mode"] = mode
            table.name += f"_{mode}" if i else ""
        tables += found
    return tables
