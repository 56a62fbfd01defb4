"""Learning dynamics: evaluate every saved checkpoint of a run, tabulate and plot each skill against the step.

A run folder holds checkpoints ``step-<N>/``. Each checkpoint's full results go to ``<out>/step-<N>/``
(reused on a rerun with the same suites, so an interrupted sweep resumes); the sweep writes ``sweep.json``,
``sweep.md``, ``sweep.csv`` and ``plots/<skill>.png``, names the best checkpoint per skill (earliest step on
ties) and the one chosen by COCO dev TR@1 (the paper's selection signal), or the last step when that skill was
not measured.
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

from .reports import dumps, headline, write_results
from .runner import EvalConfig, evaluate

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")
SELECT_BY = "coco_dev_tr1"


@dataclass
class SweepResult:
    """Skills per checkpoint, the best checkpoint per skill and the selected one."""

    rows: list[dict]  # {"step": int, "checkpoint": str, <skill>: float, ...} by step
    skills: list[str]
    best: dict[str, dict] = field(default_factory=dict)  # skill -> {"step", "value"}
    selected: dict = field(default_factory=dict)  # {"by", "step", "value"}


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


def _cached(out: str, cfg: EvalConfig) -> dict | None:
    url = join(out, "results.json")
    fs, path = url_fs(url)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        doc = orjson.loads(fh.read())
    if doc.get("meta", {}).get("suites") != list(cfg.suites):
        return None
    return doc["suites"]


def sweep(
    run_dir: str,
    cfg: EvalConfig,
    load: Callable[[str], object],
    out: str,
    resume: bool = True,
    select_by: str = SELECT_BY,
) -> SweepResult:
    """Evaluate every checkpoint of ``run_dir`` with ``load(checkpoint) -> scorer``; per-step results."""
    checkpoints = find_checkpoints(run_dir)
    if not checkpoints:
        raise FileNotFoundError(f"no step-<N>/ checkpoint folders in {run_dir}")
    rows = []
    for step, ckpt in checkpoints:
        step_out = join(out, f"step-{step}")
        results = _cached(step_out, cfg) if resume else None
        if results is None:
            log.info("evaluating %s", ckpt)
            scorer = load(ckpt)
            results = evaluate(scorer, cfg)
            del scorer
            gc.collect()
            write_results(results, step_out, {"checkpoint": ckpt, "step": step, "suites": list(cfg.suites)})
        else:
            log.info("step %d: reusing %s", step, step_out)
        rows.append({"step": step, "checkpoint": ckpt, **headline(results)})
    skills = sorted({k for r in rows for k in r if k not in ("step", "checkpoint")})
    return SweepResult(rows, skills, best_per_skill(rows, skills), select_checkpoint(rows, select_by))


def sweep_markdown(result: SweepResult) -> str:
    """The table over steps, the best step per skill and the selected checkpoint."""
    header = ["step", *result.skills]
    lines = ["# sweep", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in result.rows:
        cells = [str(row["step"])] + [
            f"{row[s]:.1f}" if row.get(s) is not None else "" for s in result.skills
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| skill | best step | value |", "|---|---|---|"]
    lines += [f"| {s} | {b['step']} | {b['value']:.1f} |" for s, b in result.best.items()]
    sel = result.selected
    if sel:
        value = "" if sel.get("value") is None else f" ({sel['by']} = {sel['value']:.1f})"
        lines += ["", f"selected checkpoint: step {sel['step']}, by {sel['by']}{value}"]
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
    """One PNG per skill (value against training step, best step marked) under ``<out>/plots/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for skill in result.skills:
        points = [(r["step"], r[skill]) for r in result.rows if r.get(skill) is not None]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        if skill in result.best:
            b = result.best[skill]
            ax.scatter([b["step"]], [b["value"]], s=120, facecolors="none", edgecolors="red", label="best")
            ax.legend(loc="best")
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
