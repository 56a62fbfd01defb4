"""The companion study's printed tables, recomputed by our code for every model: ``python -m bench.companion``.

``python -m bench.companion --repo PATH [--json OUT] [--markdown]`` reads a checkout of e-bug/fine-grained-evals
(a work tree with ``outputs/``, ``notebooks/`` and ``data/winoground/data/examples.jsonl``; from a bare clone,
``git -C CLONE archive HEAD outputs/VALSE outputs/VSR_random outputs/Winoground outputs/SVO notebooks
data/winoground/data | tar -x -C PATH``), then:

1. takes every per-model figure the notebooks print from their saved cell outputs (VALSE.ipynb, VSR.ipynb,
   Winoground.ipynb, SVO.ipynb): the LaTeX rows (``NAME & 71.3 & ... \\\\``) and the ``tabulate`` tables, with
   the columns read from each cell's code (the instrument list, the VSR categories, the Winoground tag filters);
2. recomputes each model's tables from its released score files with ``tables_from_scores`` (what
   ``sgv eval --from-scores PATH/outputs@MODEL --data TAGS`` runs, TAGS holding the study's Winoground
   ``examples.jsonl`` for the tag breakdown);
3. compares each figure with the printed one at the printed precision.

Prints a table model x benchmark (figures matched / printed) and every mismatch; the summary per model
(``--markdown``) is the one in docs/evaluation.md. Exits 1 when a printed figure is not reproduced; a figure
printed for a model whose score file the checkout lacks is listed ("no scores"), not counted as reproduced.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sgverbalise.training.eval.rescore import tables_from_scores
from sgverbalise.training.eval.scorefiles import ScoreFileError, companion_models

BENCHES = ("VALSE", "VSR", "Winoground", "SVO")
TAGS_FILE = Path("data") / "winoground" / "data" / "examples.jsonl"


@dataclass
class Printed:
    """The figures one notebook prints: model key -> figure name -> printed text."""

    bench: str
    figures: dict[str, dict[str, str]] = field(default_factory=dict)
    unknown_rows: list[str] = field(default_factory=list)  # printed names no model dict maps


# ---- the notebooks' printed tables ---------------------------------------------------------------------------


def _cells(path: Path) -> list[tuple[str, str]]:
    """(source, printed stream text) of every code cell of a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("name") == "stdout")
        out.append(("".join(cell.get("source", "")), text))
    return out


def _name_maps(cells: list[tuple[str, str]]) -> dict[str, str]:
    """Printed display name -> model key, from the notebook's ``models = {...}`` / ``model_to_name = {...}``."""
    names: dict[str, str] = {}
    for source, _ in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue
                if value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                    if any(isinstance(t, ast.Name) and t.id in ("models", "model_to_name") for t in node.targets):
                        names |= {v: k for k, v in value.items()}
    return names


def _rows(text: str) -> list[tuple[str, list[str]]]:
    """(name, cells) of the printed rows: LaTeX ``a & b \\\\`` rows or ``tabulate`` plain rows."""
    rows = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or set(line) <= {"-", " "}:
            continue
        if "&" in line:
            cells = [c.strip() for c in line.removesuffix("\\\\").split("&")]
        else:
            cells = re.split(r"\s{2,}", line.strip())
        if len(cells) > 1:
            rows.append((cells[0], [c for c in cells[1:] if c]))
    return rows


def _list_literal(source: str, pattern: str) -> list:
    match = re.search(pattern, source, re.S)
    return ast.literal_eval(match.group(1)) if match else []


def _vsr_categories(cells: list[tuple[str, str]]) -> list[str]:
    for source, _ in cells:
        if "cat2relation = {" in source:
            body = source.split("cat2relation = {", 1)[1].split("}", 1)[0]
            return re.findall(r"'(\w+)':", body)
    return []


def _winoground_filters(source: str) -> list[str | None]:
    """The column groups of a Winoground cell, in printed order: ``tag=value`` per filter, None for all."""
    calls = re.findall(r"get_table_dict\(models(?:,\s*filter_examples\(filter_dict=\{(.*?)\}\))?\)", source)
    out: list[str | None] = []
    for body in calls:
        if not body:
            out.append(None)
            continue
        key, value = ast.literal_eval("{" + body + "}").popitem()
        out.append(f"{key}={value}")
    return out


def _add(printed: Printed, names: dict[str, str], row: tuple[str, list[str]], columns: list[str]) -> None:
    display, cells = row
    model = names.get(display)
    if model is None:
        printed.unknown_rows.append(display)
        return
    if len(cells) != len(columns):
        raise ValueError(f"{printed.bench}: row {display!r} has {len(cells)} figures, the code prints {len(columns)}")
    printed.figures.setdefault(model, {}).update(dict(zip(columns, cells, strict=True)))


def printed_figures(notebooks: Path) -> dict[str, Printed]:
    """bench -> the per-model figures its notebook prints (the notebooks present only)."""
    found: dict[str, Printed] = {}
    for bench in BENCHES:
        path = notebooks / f"{bench}.ipynb"
        if not path.exists():
            continue
        cells = _cells(path)
        names, printed = _name_maps(cells), Printed(bench)
        categories = _vsr_categories(cells) if bench == "VSR" else []
        for source, text in cells:
            if not text.strip():
                continue
            columns: list[str] = []
            if bench == "VALSE" and "res_dict" in source:
                columns = [f"valse/{k}" for k in _list_literal(source, r"for k in (\[.*?\])")] + ["valse/overall"]
            elif bench == "SVO" and "res_dict" in source:
                columns = [f"svo/{k}" for k in _list_literal(source, r"for k in (\[.*?\])")] + ["svo/overall"]
            elif bench == "VSR" and ("res_dict" in source or "dev_dict" in source):
                splits = [s for s in ("dev", "test") if f"_{s}.jsonl" in source]
                if len(splits) == 1:
                    columns = [f"vsr_{splits[0]}/{c}" for c in [*categories, "overall"]]
                else:  # "dev/test" cells: each cell prints dev/test
                    for row in _rows(text):
                        split_cells = [part for c in row[1] for part in c.split("/")]
                        cols = [f"vsr_{s}/{c}" for c in [*categories, "overall"] for s in splits]
                        _add(printed, names, (row[0], split_cells), [f"{c} (dev/test cell)" for c in cols])
                    continue
            elif bench == "Winoground" and "tabulate(" in source:
                columns = [
                    f"winoground/{f + '/' if f else ''}{m}"
                    for f in _winoground_filters(source)
                    for m in ("text", "image", "group")
                ]
            if not columns:
                continue
            for row in _rows(text):
                _add(printed, names, row, columns)
        found[bench] = printed
    return found


# ---- our figures ---------------------------------------------------------------------------------------------


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def our_value(tables: dict[str, dict], figure: str) -> float | None:
    """Our value of a figure named as in ``printed_figures`` (None when our tables lack it)."""
    figure = figure.removesuffix(" (dev/test cell)")
    table, *rest = figure.split("/")
    doc = tables.get(table)
    if doc is None:
        return None
    if table == "svo":
        name = rest[0]
        if name == "overall":
            return doc["figures"].get("pairwise")
        return doc["details"].get("pairwise_by_negated", {}).get(name)
    if len(rest) == 2:  # winoground/<tag>=<value>/<metric>
        tag, value = rest[0].split("=", 1)
        group = doc["details"].get("by_tag", {}).get(tag, {}).get(value)
        return None if group is None else group[rest[1]]
    return doc["figures"].get(rest[0])


@dataclass
class Result:
    """One model x benchmark: figures matched, printed, and the mismatches (figure, printed, ours)."""

    matched: int = 0
    total: int = 0
    mismatches: list[tuple[str, str, str]] = field(default_factory=list)
    note: str = ""


def compare(repo: Path) -> tuple[dict[str, dict[str, Result]], dict[str, dict[str, dict]], dict[str, Printed]]:
    """model -> bench -> Result; model -> our tables; bench -> what the notebook prints."""
    outputs = repo / "outputs"
    printed = printed_figures(repo / "notebooks")
    tags = repo / TAGS_FILE
    with tempfile.TemporaryDirectory() as tmp:
        data = None
        if tags.exists():
            (Path(tmp) / "winoground").mkdir()
            (Path(tmp) / "winoground" / "examples.jsonl").symlink_to(tags.resolve())
            data = tmp
        models = sorted(set(companion_models(str(outputs))) | {m for p in printed.values() for m in p.figures})
        ours: dict[str, dict[str, dict]] = {}
        for model in models:
            try:
                ours[model], _ = tables_from_scores(f"{outputs}@{model}", bootstrap=0, data=data)
            except ScoreFileError:
                ours[model] = {}
    results: dict[str, dict[str, Result]] = {}
    for model in models:
        for bench in BENCHES:
            res = Result()
            figures = printed.get(bench, Printed(bench)).figures.get(model, {})
            for figure, text in figures.items():
                res.total += 1
                value = our_value(ours[model], figure)
                if value is None:
                    res.mismatches.append((figure, text, "absent"))
                elif f"{value:.{_decimals(text)}f}" == text:
                    res.matched += 1
                else:
                    res.mismatches.append((figure, text, f"{value:.{_decimals(text)}f}"))
            if not figures:
                has = any(t.split("_")[0] == bench.lower() for t in ours[model])
                res.note = "not printed" if has else "-"
            elif res.total and not any(t.split("_")[0] == bench.lower() for t in ours[model]):
                res.note = "no scores"
            results.setdefault(model, {})[bench] = res
    return results, ours, printed


# ---- reports -------------------------------------------------------------------------------------------------


def _cell(res: Result) -> str:
    if not res.total:
        return res.note
    return f"{res.matched}/{res.total}" + (f" ({res.note})" if res.note else "")


def _collapsed(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, cells) with runs of ``<stem>_NN`` sharing their cells as one row ``<stem>_00 ... <stem>_29 (30)``."""
    out: list[tuple[str, str, str, list[str]]] = []  # stem, cells, first name, names
    for name, cells in rows:
        stem = re.sub(r"_\d+$", "", name)
        if out and stem != name and out[-1][0] == stem and out[-1][1] == cells:
            out[-1][3].append(name)
        else:
            out.append((stem, cells, name, [name]))
    return [(n[0] if len(n) == 1 else f"{n[0]} ... {n[-1]} ({len(n)} files)", c) for _, c, _, n in out]


def match_table(results: dict[str, dict[str, Result]]) -> str:
    """Model x benchmark: printed figures matched / printed, or why there is none."""
    rows = [(m, " | ".join(_cell(per[b]) for b in BENCHES)) for m, per in results.items()]
    lines = ["| model | " + " | ".join(BENCHES) + " |", "|---|" + "---|" * len(BENCHES)]
    return "\n".join(lines + [f"| {name} | {cells} |" for name, cells in _collapsed(rows)])


def _fmt(doc: dict | None, key: str, digits: int = 1) -> str:
    value = None if doc is None else doc["figures"].get(key)
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(results: dict[str, dict[str, Result]], ours: dict[str, dict[str, dict]]) -> str:
    """Models x VALSE overall / instrument mean, VSR dev / test, Winoground text / image / group (ours), and the
    printed figures matched (of those whose scores this checkout has) and printed without scores here."""
    lines = [
        "| model | VALSE overall | VALSE instrument mean | VSR dev | VSR test | Winoground text | image | group "
        "| printed figures matched | printed, no scores here |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    unprinted = []
    for model, per in results.items():
        t = ours[model]
        checked = [r for r in per.values() if r.note != "no scores"]
        absent = [(b, r.total) for b, r in per.items() if r.note == "no scores"]
        total = sum(r.total for r in checked)
        if not t or not total:
            unprinted += [model] if t and not absent else []
            continue
        w = t.get("winoground")
        lines.append(
            f"| {model} | {_fmt(t.get('valse'), 'overall')} | {_fmt(t.get('valse'), 'instrument_mean')} "
            f"| {_fmt(t.get('vsr_dev'), 'overall')} | {_fmt(t.get('vsr_test'), 'overall')} "
            f"| {_fmt(w, 'text', 2)} | {_fmt(w, 'image', 2)} | {_fmt(w, 'group', 2)} "
            f"| {sum(r.matched for r in checked)}/{total} | {', '.join(f'{n} ({b})' for b, n in absent) or '-'} |"
        )
    for model, per in results.items():
        absent = [(b, r.total) for b, r in per.items() if r.note == "no scores"]
        if absent and not ours[model]:
            lines.append(f"| {model} | - | - | - | - | - | - | - | - | {', '.join(f'{n} ({b})' for b, n in absent)} |")
    if unprinted:
        names = [name for name, _ in _collapsed([(m, "") for m in unprinted])]
        lines.append(f"\nScores without a printed figure: {', '.join(names)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.companion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, type=Path, help="checkout of e-bug/fine-grained-evals")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the comparison as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print the per-model summary table")
    args = parser.parse_args(argv)
    if not (args.repo / "outputs").is_dir() or not (args.repo / "notebooks").is_dir():
        print(f"{args.repo}: no outputs/ and notebooks/ (a checkout of e-bug/fine-grained-evals?)", file=sys.stderr)
        return 2
    results, ours, printed = compare(args.repo)
    print(match_table(results))
    for bench, p in printed.items():
        for name in p.unknown_rows:
            print(f"{bench}: printed row {name!r} names no model of the notebook", file=sys.stderr)
    absent: dict[str, list[str]] = {}
    for model, per in results.items():
        for bench, res in per.items():
            if res.note == "no scores":
                absent.setdefault(bench, []).append(model)
            elif res.mismatches:
                print(f"\n{model} / {bench}: {len(res.mismatches)} mismatches")
                for figure, text, got in res.mismatches:
                    print(f"  {figure}: printed {text}, ours {got}")
    for bench, models in absent.items():
        print(f"\n{bench}: printed for {len(models)} models ({', '.join(models)}), no score file in this checkout")
    checked = [r for per in results.values() for r in per.values() if r.note != "no scores"]
    matched, total = sum(r.matched for r in checked), sum(r.total for r in checked)
    unchecked = sum(r.total for per in results.values() for r in per.values() if r.note == "no scores")
    print(f"\n{matched}/{total} printed figures reproduced; {unchecked} printed without a score file here")
    if args.markdown:
        print("\n" + summary_table(results, ours))
    if args.json:
        doc = {
            m: {b: {"matched": r.matched, "total": r.total, "mismatches": r.mismatches, "note": r.note}
                for b, r in per.items()}
            for m, per in results.items()
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": doc, "tables": ours}, indent=1, default=str) + "\n")
    return 1 if matched < total else 0


if __name__ == "__main__":
    raise SystemExit(main())
