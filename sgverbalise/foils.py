"""Relation foils: false statements about the same two objects, made from what a scene graph says is true.

A relation triplet ``(subject, predicate, object)`` gets its foil in one of two ways (``foil_options``):

* **swap** subject and object, for an asymmetric predicate ("cup on table" -> "table on cup"); never for the
  predicates in ``SYMMETRIC`` ("next to", "near", ...), whose swap says the same thing, nor when subject and
  object are the same text;
* **opposite** predicate from ``OPPOSITE`` ("cup on table" -> "cup under table"): a predicate that cannot hold
  for the same ordered pair. Mostly converses ("left of" <-> "right of", "above" <-> "below"), plus
  contradictions: ``inside`` -> ``on`` (contained, so not resting on top), ``next to`` / ``beside`` ->
  ``above`` (side by side, so not one above the other), ``near`` <-> ``far from``.

``OPPOSITE`` is the one table of opposites: the experiment's probes (``training.experiment.heldout``) use it
too. For the shape scenes' predicates (``sgverbalise.synth.PREDICATES``) both kinds of foil are false by the
definitions of ``sgverbalise.synth.relation_between``: at most one predicate holds for an ordered pair, a
swapped spatial predicate becomes its converse, and ``next to`` needs the vertical extents to overlap, which
``above`` rules out.

| predicate | opposite | | predicate | opposite |
|---|---|---|---|---|
| left of | right of | | in front of | behind |
| right of | left of | | behind | in front of |
| to the left of | to the right of | | bigger than / larger than | smaller than |
| to the right of | to the left of | | smaller than | bigger than |
| above / over | below | | taller than | shorter than |
| below / beneath | above | | shorter than | taller than |
| on / on top of | under | | higher than | lower than |
| under / underneath | on | | lower than | higher than |
| inside / inside of | on | | outside / outside of | inside |
| next to / beside | above | | near | far from |
| | | | far from | near |

A predicate in neither table (``wearing``, ``holding``, ``riding``...) is asymmetric: its only foil is the swap.
``SYMMETRIC`` predicates without an opposite (``by``, ``with``, ``close to``...) get no foil. Predicates are
looked up lower-cased with single spaces; the foil keeps the texts as given.

A VSG caption (``vsg_foil``) gets one of its `` [SEP] ``-separated segments replaced by that segment's foil,
read back with the sample's triplets (the segment is ``[attributes] subject predicate [attributes] object``,
``sgverbalise.verbalise.triplet_text``); a foil that a triplet of the sample or a segment of the caption states
is not used. Every random choice is drawn from the ``random.Random`` given, so the same generator state gives
the same foil.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

SEPARATOR = " [SEP] "

OPPOSITE: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "over": "below",
    "below": "above",
    "beneath": "above",
    "on": "under",
    "on top of": "under",
    "under": "on",
    "underneath": "on",
    "in front of": "behind",
    "behind": "in front of",
    "bigger than": "smaller than",
    "larger than": "smaller than",
    "smaller than": "bigger than",
    "taller than": "shorter than",
    "shorter than": "taller than",
    "higher than": "lower than",
    "lower than": "higher than",
    "inside": "on",
    "inside of": "on",
    "outside": "inside",
    "outside of": "inside",
    "next to": "above",
    "beside": "above",
    "near": "far from",
    "far from": "near",
}
# Predicates whose opposite's opposite is themselves (converse pairs: "left of" / "right of", "on" / "under").
# ``inside`` -> ``on`` and ``next to`` -> ``above`` are one-way: in a set of statements and opposite-predicate
# foils, "on" and "above" would then be false more often than true, a preference a model learns from the words.
REVERSIBLE: frozenset[str] = frozenset(p for p, q in OPPOSITE.items() if OPPOSITE.get(q) == p)
SYMMETRIC: frozenset[str] = frozenset(
    {"next to", "beside", "near", "far from", "by", "close to", "adjacent to", "touching", "with", "and"}
)

Triplet = tuple[str, str, str]
T = TypeVar("T", bound=Hashable)  # what names the two objects: their texts, or indices into a scene


def canonical(predicate: str) -> str:
    """The predicate as the tables spell it: lower case, single spaces."""
    return " ".join(predicate.lower().split())


def opposite(predicate: str) -> str | None:
    """The predicate that cannot hold for the same ordered pair (``OPPOSITE``), or None."""
    return OPPOSITE.get(canonical(predicate))


def is_symmetric(predicate: str) -> bool:
    """Whether swapping subject and object says the same thing."""
    return canonical(predicate) in SYMMETRIC


def foil_options(subject: T, predicate: str, obj: T, balanced: bool = False) -> list[tuple[T, str, T]]:
    """The foils of a triplet, swap first, then the opposite predicate (none, one or two). Subject and
    object are texts, or anything that names the two objects (indices of a scene's objects). With
    ``balanced``, an opposite only from a converse pair (``REVERSIBLE``)."""
    options: list[tuple[T, str, T]] = []
    if not is_symmetric(predicate) and subject != obj:
        options.append((obj, predicate, subject))
    other = opposite(predicate)
    if other is not None and (not balanced or canonical(predicate) in REVERSIBLE):
        options.append((subject, other, obj))
    return options


def _pick(rng: random.Random, options: Sequence[tuple[T, str, T]]) -> tuple[T, str, T] | None:
    """One of the options: the first or the second with a coin flip when there are two, no draw otherwise."""
    if not options:
        return None
    if len(options) == 1:
        return options[0]
    return options[0] if rng.random() < 0.5 else options[1]


def foil_triplet(
    subject: T, predicate: str, obj: T, rng: random.Random, balanced: bool = False
) -> tuple[T, str, T] | None:
    """A false statement about the same two objects: with both kinds available, the swap with probability
    1/2 (one ``rng.random()`` draw), else the opposite predicate; None when the triplet has no foil. With
    ``balanced``, an opposite only from a converse pair (``REVERSIBLE``), so that no predicate is false more
    often than true across a set of statements whose converses are equally common."""
    return _pick(rng, foil_options(subject, predicate, obj, balanced))


def statement(triplet: Triplet) -> str:
    """``subject predicate object``."""
    return " ".join(triplet)


def _ends_with_words(phrase: str, name: str) -> bool:
    return phrase == name or phrase.endswith(" " + name)


def _splits(segment: str, predicate: str) -> Iterable[tuple[str, str]]:
    """Every (left, right) of the segment around a whole-word occurrence of the predicate."""
    sep = f" {predicate} "
    start = segment.find(sep)
    while start > 0:
        yield segment[:start], segment[start + len(sep):]
        start = segment.find(sep, start + 1)


def parse_segment(segment: str, triplets: Iterable[Mapping[str, str]]) -> Triplet | None:
    """``(subject phrase, predicate, object phrase)`` of a VSG segment, by the first of the sample's triplets
    it writes (phrases end with the triplet's names; attributes may come before them), or None."""
    for t in triplets:
        for left, right in _splits(segment, t["predicate"]):
            if _ends_with_words(left, t["subject"]) and _ends_with_words(right, t["object"]):
                return left, t["predicate"], right
    return None


def _stated(foil: Triplet, triplets: Sequence[Mapping[str, str]]) -> bool:
    """Whether one of the sample's triplets says what the foil says (then it is not known to be false)."""
    subject, predicate, obj = foil
    return any(
        canonical(t["predicate"]) == canonical(predicate)
        and _ends_with_words(subject, t["subject"])
        and _ends_with_words(obj, t["object"])
        for t in triplets
    )


def vsg_foil(
    caption: str, triplets: Sequence[Mapping[str, str]], rng: random.Random, separator: str = SEPARATOR
) -> str | None:
    """The VSG caption with exactly one segment replaced by its foil: a segment drawn among those that have a
    foil that neither the sample's triplets nor the caption state (``rng.randrange``), then its foil
    (``foil_triplet``'s draw); None when no segment has one. ``triplets``: the sample's (``subject``,
    ``predicate``, ``object`` names); segments that none of them writes are left alone."""
    segments = caption.split(separator)
    candidates: list[tuple[int, list[Triplet]]] = []
    for index, segment in enumerate(segments):
        parsed = parse_segment(segment, triplets)
        if parsed is None:
            continue
        options = [f for f in foil_options(*parsed) if not _stated(f, triplets) and statement(f) not in segments]
        if options:
            candidates.append((index, options))
    if not candidates:
        return None
    index, options = candidates[rng.randrange(len(candidates))]
    foil = _pick(rng, options)
    assert foil is not None
    return separator.join([*segments[:index], statement(foil), *segments[index + 1:]])
