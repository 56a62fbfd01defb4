"""Results to files and text: the headline skills, Markdown tables, ``results.json`` and the score files.

``write_results`` writes under ``out``: ``results.json`` (provenance in ``meta``, the headline, every table
with its intervals, counts; not the records), ``scores/<suite>.jsonl`` (the per-example records, enough to
recompute everything with ``sgv eval --from-scores``), ``summary.md`` and ``<suite>.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from sgverbalise.storage import atomic_write, join

from .scorefiles import SCORES_DIR, write_scores

# table figure -> skill name of the headline (the sweep's columns); retrieval: <suite>_tr1, <suite>_ir1
HEADLINE_FIGURES = {
    "overall": "",
    "instrument_mean": "_instrument_mean",
    "pairwise": "_pairwise",
    "text": "_text",
    "image": "_image",
    "group": "_group",
    "tr_r1": "_tr1",
    "ir_r1": "_ir1",
}


def all_tables(results: dict[str, dict]) -> dict[str, dict]:
    """name -> table document over the suites that ran."""
    return {name: doc for res in results.values() if res.get("status") == "ok" for name, doc in res["tables"].items()}


def headline_of(tables: dict[str, dict], with_ci: bool = False) -> dict:
    """One number per skill: VSR dev/test, VALSE (both averages), SVO, Winoground, retrieval R@1.

    With ``with_ci``: skill -> [low, high] instead (skills without an interval are left out).
    """
    out: dict = {}
    for name, doc in tables.items():
        if name.endswith("_itc") and name[: -len("_itc")] in tables:
            continue  # the ITC view of a suite scored with ITM: in its table, not in the headline
        source = doc.get("ci95", {}) if with_ci else doc["figures"]
        for figure, suffix in HEADLINE_FIGURES.items():
            if figure in source:
                out[f"{name}{suffix}"] = source[figure]
    return out


def headline(results: dict[str, dict]) -> dict[str, float]:
    """``headline_of`` the tables of ``results``."""
    return headline_of(all_tables(results))


def flat(tables: dict[str, dict]) -> dict[str, dict[str, float]]:
    """name -> figures (what ``--json`` prints per suite)."""
    return {name: doc["figures"] for name, doc in tables.items()}


def decimals(name: str) -> int:
    """Decimals a table is printed with: Winoground two (each of its 400 examples is 0.25 points), others one."""
    return 2 if name.startswith("winoground") else 1


def _fmt(value: object, places: int = 1) -> str:
    if isinstance(value, float):
        return f"{value:.{places}f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.{places}f}, {value[1]:.{places}f}]"
    return "" if value is None else str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], places: int = 1) -> str:
    """A Markdown table; floats with ``places`` decimals."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c, places) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _details_markdown(details: dict) -> list[str]:
    lines: list[str] = []
    for key, value in details.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for sub, groups in value.items():
                if groups and all(isinstance(g, dict) for g in groups.values()):
                    cols = list(next(iter(groups.values())))
                    rows = [(g, *[v.get(c) for c in cols]) for g, v in groups.items()]
                    lines += ["", f"{key}: {sub}", "", markdown_table([sub, *cols], rows)]
                else:
                    lines += ["", f"{key}: {sub}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in groups.items())]
        elif isinstance(value, dict):
            rows = list(value.items())
            lines += ["", markdown_table([key, "value"], rows)] if rows else []
        else:
            lines += ["", f"{key}: {_fmt(value)}"]
    return lines


def table_markdown(name: str, doc: dict) -> str:
    """One table: figure, percent, interval; labels and details below."""
    ci = doc.get("ci95", {})
    rows = [(f, v, ci.get(f)) for f, v in doc["figures"].items()]
    lines = [f"### {name}", "", markdown_table(["figure", "%", "95% CI"], rows, decimals(name))]
    lines += ["", "units: " + ", ".join(f"{k} {v}" for k, v in doc["n"].items())]
    lines += [f"- {k}: {v}" for k, v in doc.get("labels", {}).items() if v]
    lines += _details_markdown(doc.get("details", {}))
    return "\n".join(lines) + "\n"


def _counts_line(res: dict) -> str:
    c = res.get("counts", {})
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in c.items() if k != "dropped"]
    parts += [f"dropped ({k}): {v}" for k, v in c.get("dropped", {}).items()]
    return "; ".join(parts)


def suite_markdown(res: dict) -> str:
    """A Markdown report of one suite's result."""
    lines = [f"## {res['suite']}", ""]
    if res.get("status") != "ok":
        return "\n".join(lines + [f"{res.get('status')}: {res.get('reason', '')}", ""])
    lines += [f"score: {res['score']}; {_counts_line(res)}", ""]
    if res.get("protocol"):
        lines += ["protocol: " + ", ".join(f"{k} {v}" for k, v in res["protocol"].items()), ""]
    lines += [table_markdown(name, doc) for name, doc in res["tables"].items()]
    if res.get("missing_sample"):
        lines += ["", "missing images (first): " + ", ".join(res["missing_sample"])]
    return "\n".join(lines) + "\n"


def summary_markdown(results: dict[str, dict], title: str = "") -> str:
    """One table of the headline numbers (with intervals) and the counts per suite."""
    tables = all_tables(results)
    return headline_markdown(tables, title) + "\n" + markdown_table(
        ["suite", "status", "counts"],
        [(s, r.get("status"), _counts_line(r) or r.get("reason", "")) for s, r in results.items()],
    ) + "\n"


def headline_markdown(tables: dict[str, dict], title: str = "") -> str:
    """The headline skills with their 95% intervals."""
    values, ci = headline_of(tables), headline_of(tables, with_ci=True)
    lines = [f"# {title}" if title else "# evaluation", ""]
    rows = [(k, _fmt(v, decimals(k)), _fmt(ci.get(k), decimals(k))) for k, v in values.items()]
    lines.append(markdown_table(["skill", "%", "95% CI"], rows))
    return "\n".join(lines) + "\n"


def _summary_with_sample(results: dict[str, dict], meta: dict) -> str:
    text = summary_markdown(results, meta.get("checkpoint", ""))
    sample = meta.get("examples", {}).get("sample")
    return text + (f"\nexamples: {sample}\n" if sample else "")


def dumps(obj: object) -> bytes:
    """Indented JSON with sorted keys (same results, same bytes)."""
    return orjson.dumps(
        obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    )


def write_results(results: dict[str, dict], out: str, meta: dict | None = None) -> list[str]:
    """``results.json``, ``scores/<suite>.jsonl``, ``summary.md`` and ``<suite>.md`` under ``out``."""
    written = []
    suites = {s: {k: v for k, v in r.items() if k != "records"} for s, r in results.items()}
    doc = {"meta": meta or {}, "headline": headline(results), "headline_ci95": headline_of(
        all_tables(results), with_ci=True), "suites": suites}
    for name, data in [
        ("results.json", dumps(doc)),
        ("summary.md", _summary_with_sample(results, meta or {}).encode()),
        *[(f"{s}.md", suite_markdown(r).encode()) for s, r in results.items()],
    ]:
        url = join(out, name)
        atomic_write(url, data)
        written.append(url)
    for suite, res in results.items():
        if res.get("records"):
            written.append(write_scores(res["records"], join(out, SCORES_DIR, f"{suite}.jsonl")))
    return written
