"""The relation vocabulary (relations.json): ids stable by count (descending), then predicate (ascending).

Modes: ``all`` keeps every distinct predicate it is given, ``top_k`` the ``top_k`` most frequent ones,
``min_count`` those seen at least ``min_count`` times. What a mode leaves out is kept, with its count, in
``excluded``, as is what the caller left out before (``excluded=`` of ``from_counts``, e.g. predicates of a
source the vocabulary was not built from).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from sgverbalise.schemas import SCHEMA_VERSION, validator

MODES = ("all", "top_k", "min_count")
_DUMP_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def _ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """(predicate, count) by count descending, then predicate ascending."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _check_valid(doc: dict) -> None:
    """Raise ValueError when ``doc`` does not match schemas/relations.schema.json."""
    from jsonschema.exceptions import best_match

    error = best_match(validator("relations").iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ValueError(f"relations.json is not valid at {where}: {error.message}")


class RelationVocab:
    """Predicate <-> id, with the counts it was built from and what it left out."""

    def __init__(
        self,
        relations: Sequence[tuple[str, int]],
        mode: Mapping[str, Any] | None = None,
        excluded: Mapping[str, int] | None = None,
    ) -> None:
        self._relations = [(str(p), int(c)) for p, c in relations]
        self._ids = {p: i for i, (p, _) in enumerate(self._relations)}
        if len(self._ids) != len(self._relations):
            raise ValueError("a predicate appears twice in the vocabulary")
        if any(not p for p in self._ids):
            raise ValueError("the empty predicate cannot be in the vocabulary")
        if self._relations != _ranked(dict(self._relations)):
            raise ValueError("relations are not ordered by count (descending), then predicate (ascending)")
        self.mode = dict(mode or {"name": "all"})
        self.excluded = dict(sorted((str(p), int(c)) for p, c in (excluded or {}).items()))

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        mode: str = "all",
        top_k: int | None = None,
        min_count: int = 1,
        sources: Sequence[str] = (),
        excluded: Mapping[str, int] | None = None,
        normalise: Mapping[str, Any] | None = None,
    ) -> RelationVocab:
        """A vocabulary from predicate counts; ``sources`` and ``normalise`` are recorded in ``mode``."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "top_k" and (top_k is None or top_k < 1):
            raise ValueError("mode top_k needs top_k >= 1")
        if mode == "min_count" and min_count < 1:
            raise ValueError("mode min_count needs min_count >= 1")
        if any(not p for p in counts):
            raise ValueError("the empty predicate cannot be counted into the vocabulary")
        if any(c < 0 for c in counts.values()):
            raise ValueError("counts must not be negative")
        ranked = _ranked(counts)
        if mode == "top_k":
            kept, left = ranked[:top_k], ranked[top_k:]
        elif mode == "min_count":
            kept = [(p, c) for p, c in ranked if c >= min_count]
            left = [(p, c) for p, c in ranked if c < min_count]
        else:
            kept, left = ranked, []
        kept_names = {p for p, _ in kept}
        out: Counter[str] = Counter({p: c for p, c in (excluded or {}).items() if p and p not in kept_names})
        out.update(dict(left))
        info: dict[str, Any] = {
            "name": mode,
            "top_k": top_k if mode == "top_k" else None,
            "min_count": min_count if mode == "min_count" else None,
            "sources": sorted(sources),
        }
        if normalise is not None:
            info["normalise"] = dict(normalise)
        return cls(kept, info, out)

    def with_left_out(self, counts: Mapping[str, int]) -> RelationVocab:
        """This vocabulary with the predicates of ``counts`` (counted in sources left out of it) that it never
        counted added to ``excluded``: those neither in it nor among the ones its mode dropped. Built from the
        counts of its sources alone, then given those of the others, it equals ``from_counts`` of its sources with
        the others' predicates that its sources do not have as ``excluded``."""
        counted = set(self._ids) | set(self.excluded)
        more = {p: c for p, c in counts.items() if p and p not in counted}
        return RelationVocab(self._relations, self.mode, {**self.excluded, **more})

    # -- lookups ----------

    def id(self, predicate: str) -> int | None:
        """The id of a normalised predicate, or None when it is not in the vocabulary."""
        return self._ids.get(predicate)

    def predicate(self, relation_id: int) -> str:
        """The predicate of an id."""
        return self._relations[relation_id][0]

    def count(self, predicate: str) -> int | None:
        """How often the predicate was counted, or None when it is not in the vocabulary."""
        i = self._ids.get(predicate)
        return None if i is None else self._relations[i][1]

    @property
    def predicates(self) -> list[str]:
        """Predicates in id order."""
        return [p for p, _ in self._relations]

    def __len__(self) -> int:
        return len(self._relations)

    def __contains__(self, predicate: object) -> bool:
        return predicate in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RelationVocab) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"RelationVocab({len(self)} predicates, mode={self.mode.get('name')!r})"

    # -- JSON ----------

    def to_json(self) -> dict:
        """The relations.json document (schemas/relations.schema.json)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "mode": dict(self.mode),
            "relations": [{"id": i, "predicate": p, "count": c} for i, (p, c) in enumerate(self._relations)],
            "excluded": dict(self.excluded),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RelationVocab:
        """A vocabulary from a relations.json document (validated; ids must be 0..n-1 in order)."""
        doc = dict(doc)
        _check_valid(doc)
        rows = doc["relations"]
        if [r["id"] for r in rows] != list(range(len(rows))):
            raise ValueError("relation ids must be 0..n-1, listed in order")
        return cls([(r["predicate"], r["count"]) for r in rows], doc["mode"], doc.get("excluded") or {})

    def dumps(self) -> bytes:
        """The deterministic bytes of relations.json (sorted keys, indent 2, trailing newline)."""
        doc = self.to_json()
        _check_valid(doc)
        return orjson.dumps(doc, option=_DUMP_OPTIONS)

    def save(self, url: str) -> None:
        """Write relations.json to a local path (atomically) or any fsspec URL."""
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        data = self.dumps()
        fs, path = fsspec.core.url_to_fs(url)
        if isinstance(fs, LocalFileSystem):
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".relations-", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            with fs.open(path, "wb") as f:
                f.write(data)

    @classmethod
    def load(cls, url: str) -> RelationVocab:
        """Read relations.json from a local path or any fsspec URL."""
        from sgverbalise.storage import read_bytes

        return cls.from_json(orjson.loads(read_bytes(url)))


def vocabulary_sources(choice: str, mode: str, given: Sequence[str]) -> list[str]:
    """The sources whose counts make the vocabulary, sorted.

    ``auto``: GQA alone in mode ``all`` when GQA is given (the paper's relation classes are the distinct GQA
    relation strings), every given source otherwise; ``all``: every given source; ``gqa``/``vg``: that one,
    which must be given.
    """
    given = sorted(set(given))
    if choice == "auto":
        return ["gqa"] if mode == "all" and "gqa" in given else given
    chosen = given if choice == "all" else [choice]
    missing = [s for s in chosen if s not in given]
    if missing or not chosen:
        raise ValueError(f"sources {choice!r} need input for {', '.join(missing) or 'a source'}")
    return chosen


def count_predicates(records: Iterable[dict], normaliser: Any = None) -> Counter[str]:
    """Counts of the normalised predicates of records, empty ones skipped.

    A relation whose ``predicate`` is still None is normalised with ``normaliser`` (its ``predicate`` method);
    without one, such a record is a ValueError.
    """
    counts: Counter[str] = Counter()
    for rec in records:
        for rel in rec.get("relations") or []:
            pred = rel.get("predicate")
            if pred is None:
                if normaliser is None:
                    raise ValueError(f"record {rec.get('image_id')!r} is not normalised (predicate is None)")
                pred = normaliser.predicate(rel.get("predicate_raw") or "")
            if pred:
                counts[pred] += 1
    return counts
