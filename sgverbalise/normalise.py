"""Normalise object names, attributes and predicates of canonical scene-graph records.

Steps, in order, for every phrase:

1. text: NFKC, typographic quotes and dashes folded to ``'`` and ``-``, control/format characters and lone
   surrogates dropped, lowercase (optional), every character that is not a letter, digit or mark turned into a
   space except the joiners ``- ' . / &`` when they stand between two letters or digits ("t-shirt", "man's",
   "3.5" keep theirs; "brown." "grey car, parked." and ``lit "walk"`` lose them), whitespace collapsed.
2. lemmatisation (optional, off by default): spaCy's lookup lemmatiser (``spacy.blank("en")`` with the tables
   of the spacy-lookups-data package; no model, no network) on every purely alphabetic token of the phrase,
   the rest of the phrase kept as written.
3. aliases (optional): Visual Genome's ``object_alias.txt`` (names) or ``relationship_alias.txt`` (predicates)
   map the whole phrase to the first entry of its line. Alias entries go through steps 1-2 as well, so they
   match what those steps produce; chains (``inside a`` -> ``inside`` -> ``in``) are followed to their end,
   and where two lines claim the same entry the earlier line wins. The files carry their own errors
   (``vases`` -> ``vas`` -> ``va``, ``glasses`` -> ``glass``), one more reason they are off by default.

Lemmatisation is off by default because the lookup table lemmatises word forms without their part of speech,
and scene-graph vocabulary is full of forms whose lemma changes their meaning. Pitfalls found on the real VG
and GQA excerpts (each pinned by tests/test_normalise.py):

- ``left`` -> ``leave``: the GQA predicate "to the left of" becomes "to the leave of" (and "left" meets
  ``leaving`` and ``leaves``, which also become ``leave``);
- nouns turned into other words: ``ground`` -> ``grind``, ``stove`` -> ``stave``, ``number`` -> ``numb``,
  ``moped`` -> ``mope``, ``cooler`` -> ``cool``, ``bit`` -> ``bite``, ``building`` -> ``build``, ``ceiling``
  -> ``ceil``, ``painting`` -> ``paint``, ``clothing``/``clothes`` -> ``clothe``, ``shelves`` -> ``shelve``;
- compounds with a participle or gerund: ``living room`` -> ``live room``, ``parking meter`` -> ``park
  meter``, ``wrought iron`` -> ``work iron``, ``well-lit`` -> ``good-light`` (the tokenizer splits hyphens);
- pluralia tantum and Latin plurals: ``glasses`` -> ``glass`` (eyeglasses become drinking glasses),
  ``pants`` -> ``pant``, ``shorts`` -> ``short``, ``scissors`` -> ``scissor``, ``graffiti`` -> ``graffito``,
  ``data`` -> ``datum``;
- predicates lose tense and agreement: ``wearing`` -> ``wear``, ``sitting on`` -> ``sit on``, ``has`` ->
  ``have``, ``made of`` -> ``make of``, ``are on`` -> ``be on`` (merging classes GQA keeps apart, e.g.
  "wearing" and "wears");
- attributes lose their form: ``parked`` -> ``park``, ``lit`` -> ``light``, ``smaller`` -> ``small``, ``an``
  -> ``a``;
- the lookup is case-sensitive: with ``lowercase=False``, "Wearing" is left as is.

Two traps of the lookup are avoided here rather than pinned: the clitic of "man's" is a token of its own that
the table lemmatises to "have" (giving "manhave"), and numbers or punctuation tokens are looked up too; only
alphabetic tokens are lemmatised, so "man's" and "t-shirt" stay as they are.

The paper uses the raw GQA relation strings, which is what the defaults (lowercase text normalisation only,
no lemmas, no aliases) give.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

_LEMMA_CACHE_SIZE = 65536

# Typographic variants folded to the ASCII joiner before the character classes are applied.
_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u02bc": "'",
        "\u02b9": "'",
        "\u0060": "'",
        "\u00b4": "'",
        "\u2032": "'",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\ufe63": "-",
        "\u200b": " ",
    }
)
_JOINERS = "-'./&"
# A joiner that does not stand between two word characters (after the other punctuation became spaces).
_LOOSE_JOINER = re.compile(rf"(?<!\w)[{re.escape(_JOINERS)}]|[{re.escape(_JOINERS)}](?!\w)")


@dataclass(frozen=True)
class NormaliseConfig:
    """How names, attributes and predicates are normalised (alias paths are fsspec URLs)."""

    lowercase: bool = True
    lemmatize: bool = False
    object_aliases: str | None = None
    relation_aliases: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return asdict(self)


def _char_class(ch: str) -> str:
    """What ``ch`` becomes: itself (letter, digit, mark, joiner), a space, or nothing (control, format)."""
    if ch.isspace():
        return " "
    cat = unicodedata.category(ch)
    if cat[0] in "LNM" or ch in _JOINERS:
        return ch
    if cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return ""
    return " "


def normalise_text(s: str, lowercase: bool = True) -> str:
    """Text normalisation of one phrase (NFKC, case, punctuation, whitespace); see the module docstring."""
    if not isinstance(s, str):
        raise TypeError(f"expected a str, got {type(s).__name__}")
    # Lone surrogates (from JSON "\ud800" escapes) cannot be encoded; drop them before anything else.
    s = s.encode("utf-8", "ignore").decode("utf-8")
    s = unicodedata.normalize("NFKC", s).translate(_FOLD)
    if lowercase:
        s = s.lower()
    s = "".join(_char_class(ch) for ch in s)
    s = _LOOSE_JOINER.sub(" ", s)
    return " ".join(s.split())


def read_alias_lines(url: str) -> list[list[str]]:
    """The synonym sets of a VG alias file (one comma-separated line each, canonical first), as written."""
    import fsspec

    with fsspec.open(url, "rt", encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\r\n").split(",") for line in f if line.strip()]


class Normaliser:
    """Normalises names, attributes, predicates and whole records as a ``NormaliseConfig`` says.

    Picklable: the spaCy pipeline, the caches and the alias maps are rebuilt lazily after unpickling; the
    alias files are read once, when the normaliser is made, so workers do not need to reach them.
    """

    def __init__(self, config: NormaliseConfig | None = None) -> None:
        self.config = config or NormaliseConfig()
        self._alias_lines: dict[str, list[list[str]]] = {}
        for kind, url in (("object", self.config.object_aliases), ("relation", self.config.relation_aliases)):
            if url:
                self._alias_lines[kind] = read_alias_lines(url)
        self._reset()

    def _reset(self) -> None:
        self._nlp = None
        self._alias_maps: dict[str, dict[str, str]] = {}
        cached = functools.lru_cache(maxsize=_LEMMA_CACHE_SIZE)
        self._phrase = cached(self._phrase_uncached)
        # names and predicates repeat massively: each normalised once, aliases included (a C cache hit per use)
        self._name = cached(self._name_uncached)
        self._predicate = cached(self._predicate_uncached)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "alias_lines": self._alias_lines}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._alias_lines = state["alias_lines"]
        self._reset()

    # -- building blocks ----------

    @property
    def nlp(self):
        """The spaCy lookup lemmatiser, made on first use."""
        if self._nlp is None:
            import spacy

            nlp = spacy.blank("en")
            nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
            nlp.initialize()
            self._nlp = nlp
        return self._nlp

    def text(self, s: str) -> str:
        """Text normalisation only (no lemmas, no aliases)."""
        return normalise_text(s, self.config.lowercase)

    def lemmatise(self, phrase: str) -> str:
        """Lookup lemma of every alphabetic token of an already text-normalised phrase, spacing kept."""
        if not phrase:
            return phrase
        doc = self.nlp(phrase)
        return "".join((t.lemma_ if t.is_alpha and t.lemma_ else t.text) + t.whitespace_ for t in doc)

    def _phrase_uncached(self, s: str) -> str:
        out = self.text(s)
        return self.lemmatise(out) if self.config.lemmatize else out

    def phrase(self, s: str) -> str:
        """Text normalisation then, when configured, lemmatisation (cached per phrase); no aliases."""
        return self._phrase(s)

    def _alias_map(self, kind: str) -> dict[str, str]:
        """Entry -> canonical form, both normalised as phrases, chains followed to their end."""
        if kind in self._alias_maps:
            return self._alias_maps[kind]
        direct: dict[str, str] = {}
        for line in self._alias_lines.get(kind, []):
            canonical = self.phrase(line[0])
            if not canonical:
                continue
            for entry in line[1:]:
                key = self.phrase(entry)
                if key and key != canonical and key not in direct:
                    direct[key] = canonical
        resolved: dict[str, str] = {}
        for key, target in direct.items():
            seen = {key}
            while target in direct and target not in seen:
                seen.add(target)
                target = direct[target]
            if target != key:
                resolved[key] = target
        self._alias_maps[kind] = resolved
        return resolved

    # -- public ----------

    def _name_uncached(self, s: str) -> str:
        out = self.phrase(s)
        return self._alias_map("object").get(out, out) if "object" in self._alias_lines else out

    def _predicate_uncached(self, s: str) -> str:
        out = self.phrase(s)
        return self._alias_map("relation").get(out, out) if "relation" in self._alias_lines else out

    def name(self, s: str) -> str:
        """A normalised object name (object aliases applied)."""
        return self._name(s)

    def attribute(self, s: str) -> str:
        """A normalised attribute (no aliases: VG's alias files cover names and predicates)."""
        return self.phrase(s)

    def predicate(self, s: str) -> str:
        """A normalised predicate (relation aliases applied)."""
        return self._predicate(s)

    def attributes(self, values: Iterable[str]) -> list[str]:
        """Normalised attributes, empty ones dropped, duplicates dropped keeping the first."""
        out: dict[str, None] = {}
        for value in values:
            norm = self._phrase(value)  # what attribute() returns, without its call on this per-object path
            if norm:
                out.setdefault(norm, None)
        return list(out)

    def record(self, rec: dict) -> dict:
        """A new record with ``name``, ``attributes_norm`` and every relation's ``predicate`` filled in."""
        objects = []
        name_of, predicate_of = self._name, self._predicate
        for obj in rec.get("objects") or []:
            names = list(obj.get("names") or [])
            name = ""
            for raw in names:  # the first name that is not empty once normalised
                if name := name_of(raw):
                    break
            attributes = list(obj.get("attributes") or [])
            objects.append(
                {
                    **obj,
                    "names": names,
                    "name": name,
                    "attributes": attributes,
                    "attributes_norm": self.attributes(attributes),
                    "merged_object_ids": list(obj.get("merged_object_ids") or []),
                }
            )
        relations = [
            {**rel, "predicate": predicate_of(rel.get("predicate_raw") or "")}
            for rel in rec.get("relations") or []
        ]
        regions = [dict(region) for region in rec.get("regions") or []]
        return {**rec, "objects": objects, "relations": relations, "regions": regions}
