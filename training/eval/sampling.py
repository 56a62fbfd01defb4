"""``--limit``: a seeded, stratified sample of a suite's examples (never the first N, which would cover only
the first instruments of VALSE or shrink a retrieval gallery without saying so).

The stratum of an example: VALSE its instrument, VSR its split and meta-category, SVO-Probes its negated part,
Winoground its collapsed tag. ``limit`` is the number kept per stratum (all of a smaller stratum), drawn with
``random.Random(seed)``, and the kept examples stay in their original order. Retrieval samples ``limit``
gallery images (with all their captions).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable

from .benchmarks import SvoExample, ValseExample, VsrExample, WinogroundExample, vsr_category


def stratum(example: object) -> Hashable:
    """The stratum of an example (see the module docstring)."""
    if isinstance(example, ValseExample):
        return example.instrument
    if isinstance(example, VsrExample):
        return (example.split, vsr_category(example.relation))
    if isinstance(example, SvoExample):
        return example.negated
    if isinstance(example, WinogroundExample):
        return dict(example.tags).get("collapsed_tag", "")
    return ""


def stratified_sample(
    examples: list, limit: int | None, seed: int = 0, key: Callable[[object], Hashable] = stratum
) -> list:
    """At most ``limit`` examples per stratum, drawn at random with ``seed``, in their original order."""
    if limit is None:
        return examples
    groups: dict[Hashable, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(key(ex), []).append(i)
    rng = random.Random(seed)
    kept: list[int] = []
    for k in sorted(groups, key=str):
        members = groups[k]
        kept += members if len(members) <= limit else rng.sample(members, limit)
    return [examples[i] for i in sorted(kept)]


def sample_indices(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """``limit`` of ``range(n)`` at random with ``seed`` (all when ``limit`` is None or larger), sorted."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def describe(limit: int | None, seed: int) -> dict:
    """How the examples were chosen, for the provenance of a result."""
    if limit is None:
        return {"sample": "all examples"}
    return {
        "sample": f"seeded stratified sample: at most {limit} examples per stratum (VALSE instrument, VSR split "
        f"and category, SVO negated part, Winoground collapsed tag), {limit} images per retrieval gallery",
        "limit": limit,
        "seed": seed,
    }
