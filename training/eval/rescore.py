"""Tables from score files, without a model: ``sgv eval --from-scores`` and ``sgv eval --compare``.

A source is a score file, a folder of them (an ``sgv eval`` output folder works), or the companion study's
``outputs/`` folder; ``SOURCE@MODEL`` picks one of the companion study's models (needed when the folder holds
several, as the released repository does).
"""

from __future__ import annotations

from .benchmarks import read_winoground
from .scorefiles import read_scores
from .tables import VSR_THRESHOLD, Table, suite_tables
from .uncertainty import BOOTSTRAP_SAMPLES, compare, table_doc


def split_source(text: str) -> tuple[str, str | None]:
    """``SOURCE@MODEL`` -> (SOURCE, MODEL); no ``@``: (SOURCE, None)."""
    source, sep, model = text.rpartition("@")
    return (source, model or None) if sep and source else (text, None)


def with_winoground_tags(records: list[dict], data: str) -> tuple[list[dict], str]:
    """Records with the tags of ``data``'s ``winoground/examples.jsonl`` (by id), and the file read."""
    loaded = read_winoground(data)
    tags = {ex.id: dict(ex.tags) for ex in loaded.examples}
    return [tags.get(str(r["id"]), {}) | r for r in records], loaded.files[0]


def load_tables(
    text: str, vsr_threshold: float = VSR_THRESHOLD, data: str | None = None
) -> tuple[dict[str, Table], list[str]]:
    """name -> Table of every suite in the source, and the files read.

    ``data``: a benchmark folder whose Winoground ``examples.jsonl`` gives the tags of the breakdown (the
    companion study's files have none).
    """
    source, model = split_source(text)
    records, files = read_scores(source, model)
    if data and records.get("winoground"):
        records["winoground"], found = with_winoground_tags(records["winoground"], data)
        files.append(found)
    tables = {t.name: t for suite, rows in sorted(records.items()) for t in suite_tables(suite, rows, vsr_threshold)}
    return tables, files


def tables_from_scores(
    text: str, vsr_threshold: float = VSR_THRESHOLD, bootstrap: int = BOOTSTRAP_SAMPLES, data: str | None = None
) -> tuple[dict[str, dict], list[str]]:
    """name -> table document (figures, intervals, details) recomputed from the source, and the files read."""
    tables, files = load_tables(text, vsr_threshold, data)
    return {name: table_doc(t, bootstrap) for name, t in tables.items()}, files


def compare_sources(
    a: str, b: str, vsr_threshold: float = VSR_THRESHOLD, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, dict]:
    """name -> paired comparison (A - B, interval, p-value) of the tables both sources have."""
    ta, _ = load_tables(a, vsr_threshold)
    tb, _ = load_tables(b, vsr_threshold)
    common = [n for n in ta if n in tb]
    if not common:
        raise ValueError(f"{a} and {b} have no table in common ({', '.join(ta)} vs {', '.join(tb)})")
    return {n: compare(ta[n], tb[n], samples) for n in common}
