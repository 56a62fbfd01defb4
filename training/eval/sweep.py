"""Learning dynamics: evaluate every saved checkpoint of a run, tabulate and plot each skill against the step.

A run folder holds checkpoints ``step-<N>/``. Each checkpoint's full results go to ``<out>/step-<N>/``
(reused on a rerun with the same suites, so an interrupted sweep resumes); the sweep writes ``sweep.json``,
``sweep.md``, ``sweep.csv`` and ``plots/<skill>.png`` (each value with its bootstrap 95% interval).

Checkpoints are selected on dev sets only, never on the test set a figure is reported on: one checkpoint for
everything by COCO dev TR@1 (the paper's selection signal; the last step when it was not measured), and VSR
test at the step of the best VSR dev. The earliest step wins ties.
"""

from __future__ import annotations

import csv
import gc
import io
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import orjson

from sgverbalise.storage import atomic_write, join, url_fs

from .provenance import eval_meta
from .reports import all_tables, dumps, headline, headline_of, write_results
from .runner import EvalConfig, evaluate
from .sampling import describe

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")
SELECT_BY = "coco_dev_tr1"
DEV_OF = {"vsr_test": "vsr_dev"}  # a test skill selected on its own dev set


@dataclass
class SweepResult:
    """Skills per checkpoint, their intervals, the selected checkpoint and each skill at its dev-chosen step."""

    rows: list[dict]  # {"step": int, "checkpoint": str, <skill>: float, ...} by step
    skills: list[str]
    selected: dict = field(default_factory=dict)  # {"by", "step", "value"}
    reported: dict[str, dict] = field(default_factory=dict)  # skill -> {"step", "value", "by"}
    intervals: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # step -> skill -> [low, high]


def find_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """``(step, url)`` of the ``step-<N>`` folders in ``run_dir``, by step."""
    fs, path = url_fs(run_dir)
    found = []
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        match = STEP_DIR.match(name)
        if match and entry.get("type") == "directory":
            found.append((int(match.group(1)), join(run_dir, name)))
    return sorted(found)


def is_dev_skill(skill: str) -> bool:
    """True for skills measured on a dev set (``coco_dev_tr1``, ``vsr_dev``...), the only ones that may select."""
    return "dev" in skill.split("_")


def best_per_skill(rows: list[dict], skills: list[str]) -> dict[str, dict]:
    """For each skill, the step with the highest value (the earliest one on ties)."""
    best: dict[str, dict] = {}
    for skill in skills:
        scored = [(r[skill], -r["step"]) for r in rows if r.get(skill) is not None]
        if scored:
            value, neg_step = max(scored)
            best[skill] = {"step": -neg_step, "value": value}
    return best


def select_checkpoint(rows: list[dict], by: str = SELECT_BY) -> dict:
    """The checkpoint with the best ``by`` skill, or the last one when no checkpoint measured it."""
    best = best_per_skill(rows, [by]).get(by)
    if best:
        return {"by": by, **best}
    return {"by": "last", "step": rows[-1]["step"], "value": None} if rows else {}


def reported_values(rows: list[dict], skills: list[str], selected: dict) -> dict[str, dict]:
    """Each skill at the step chosen on a dev set: its own dev set (``DEV_OF``) or the overall selection."""
    by_step = {r["step"]: r for r in rows}
    out: dict[str, dict] = {}
    for skill in skills:
        dev = DEV_OF.get(skill)
        choice = best_per_skill(rows, [dev]).get(dev) if dev else None
        step, by = (choice["step"], dev) if choice else (selected.get("step"), selected.get("by"))
        value = by_step.get(step, {}).get(skill)
        if value is not None:
            out[skill] = {"step": step, "value": value, "by": by}
    return out


def _cached(out: str, cfg: EvalConfig) -> dict | None:
    """The suites of a previous run of the same suites and sample, or None."""
    url = join(out, "results.json")
    fs, path = url_fs(url)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        doc = orjson.loads(fh.read())
    meta = doc.get("meta", {})
    if meta.get("suites") != list(cfg.suites) or meta.get("examples") != describe(cfg.limit, cfg.limit_seed):
        return None
    return doc["suites"]


def sweep(
    run_dir: str,
    cfg: EvalConfig,
    load: Callable[[str], object],
    out: str,
    resume: bool = True,
    select_by: str = SELECT_BY,
    model: str = "",
) -> SweepResult:
    """Evaluate every checkpoint of ``run_dir`` with ``load(checkpoint) -> scorer``; per-step results."""
    checkpoints = find_checkpoints(run_dir)
    if not checkpoints:
        raise FileNotFoundError(f"no step-<N>/ checkpoint folders in {run_dir}")
    rows, intervals = [], {}
    for step, ckpt in checkpoints:
        step_out = join(out, f"step-{step}")
        results = _cached(step_out, cfg) if resume else None
        if results is None:
            log.info("evaluating %s", ckpt)
            scorer = load(ckpt)
            results = evaluate(scorer, cfg)
            del scorer
            gc.collect()
            write_results(results, step_out, eval_meta(cfg, results, ckpt, model, step=step))
        else:
            log.info("step %d: reusing %s", step, step_out)
        rows.append({"step": step, "checkpoint": ckpt, **headline(results)})
        intervals[step] = headline_of(all_tables(results), with_ci=True)
    skills = sorted({k for r in rows for k in r if k not in ("step", "checkpoint")})
    selected = select_checkpoint(rows, select_by)
    return SweepResult(rows, skills, selected, reported_values(rows, skills, selected), intervals)


def _cell(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def sweep_markdown(result: SweepResult) -> str:
    """The table over steps (values with 95% intervals), the selected checkpoint and each reported skill."""
    header = ["step", *result.skills]
    lines = ["# sweep", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in result.rows:
        ci = result.intervals.get(row["step"], {})
        cells = [str(row["step"])] + [_cell(row.get(s), ci.get(s)) for s in result.skills]
        lines.append("| " + " | ".join(cells) + " |")
    sel = result.selected
    if sel:
        value = "" if sel.get("value") is None else f" ({sel['by']} = {sel['value']:.1f})"
        lines += ["", f"selected checkpoint: step {sel['step']}, by {sel['by']}{value}"]
    if result.reported:
        lines += ["", "Each skill at a step chosen on a dev set (never on the set it is reported on):", ""]
        lines += ["| skill | step | chosen by | value | 95% CI |", "|---|---|---|---|---|"]
        for skill, r in result.reported.items():
            ci = result.intervals.get(r["step"], {}).get(skill)
            span = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
            lines.append(f"| {skill} | {r['step']} | {r['by']} | {r['value']:.1f} | {span} |")
    return "\n".join(lines) + "\n"


def sweep_csv(result: SweepResult) -> str:
    """The table over steps as CSV."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "checkpoint", *result.skills], lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: row.get(k, "") for k in writer.fieldnames})
    return buf.getvalue()


def plot_skills(result: SweepResult, out: str) -> list[str]:
    """One PNG per skill (value and 95% interval against step, the dev-chosen step circled) in ``<out>/plots/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for skill in result.skills:
        points = [(r["step"], r[skill]) for r in result.rows if r.get(skill) is not None]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values, marker="o")
        spans = [result.intervals.get(step, {}).get(skill) for step in steps]
        if all(spans) and spans:
            ax.fill_between(steps, [c[0] for c in spans], [c[1] for c in spans], alpha=0.2, label="95% CI")
        if skill in result.reported:
            r = result.reported[skill]
            label = f"chosen by {r['by']}"
            ax.scatter([r["step"]], [r["value"]], s=120, facecolors="none", edgecolors="red", label=label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{skill} (%)")
        ax.set_title(skill)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        url = join(out, "plots", f"{skill}.png")
        atomic_write(url, buf.getvalue())
        written.append(url)
    return written


def write_sweep(result: SweepResult, out: str) -> list[str]:
    """``sweep.json``, ``sweep.md``, ``sweep.csv`` and the plots under ``out``; returns the URLs written."""
    written = []
    for name, data in [
        ("sweep.json", dumps(asdict(result))),
        ("sweep.md", sweep_markdown(result).encode()),
        ("sweep.csv", sweep_csv(result).encode()),
    ]:
        atomic_write(join(out, name), data)
        written.append(join(out, name))
    return written + plot_skills(result, out)
