"""The experiment's report: probe accuracy mean ± std per model over seeds, a table, the skills over steps.

``results.json`` holds the meta (command, settings, timing, data counts), per model and skill the values of
the last checkpoint of every seed with their mean and (sample) standard deviation, the same at the checkpoint
selected by the retrieval dev TR@1 (the paper's selection signal), the differences of the relation-enhanced
models to their baselines (difference of means ± its standard error), the curves (mean and std over seeds at
every checkpoint) and every run's own numbers. ``results.md`` is the table; ``skills.png`` the curves.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

SKILLS: dict[str, str] = {
    "vsr_dev": "VSR-style dev",
    "vsr_test": "VSR-style test",
    "valse": "VALSE-style foils",
    "coco_tr1": "retrieval TR@1",
    "coco_ir1": "retrieval IR@1",
}
PLOTTED: tuple[str, ...] = ("vsr_dev", "vsr_test", "valse", "coco_tr1", "coco_ir1", "coco_dev_tr1")
NAMES: dict[str, str] = {"albef": "ALBEF", "realbef": "REALBEF", "xvlm": "X-VLM", "rexvlm": "REX-VLM",
                         "coco_dev_tr1": "retrieval dev TR@1 (selection)"}
PAIRS: tuple[tuple[str, str], ...] = (("realbef", "albef"), ("rexvlm", "xvlm"))
MRC = "mrc_val"


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), count and the values."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def _at_step(doc: dict, step: int) -> dict:
    return next(r for r in doc["rows"] if r["step"] == step)


def aggregate(docs: list[dict], where: str = "last") -> dict[str, dict[str, dict]]:
    """Per model and skill, mean ± std over seeds of the last (or the ``selected``) checkpoint's values."""
    table: dict[str, dict[str, list[float]]] = {}
    for doc in docs:
        if not doc["rows"]:
            continue
        row = doc["rows"][-1] if where == "last" else _at_step(doc, doc["selected"]["step"])
        cells = table.setdefault(doc["model"], {})
        for skill in SKILLS:
            if row.get(skill) is not None:
                cells.setdefault(skill, []).append(float(row[skill]))
        if where == "last" and doc.get("mrc_val"):
            cells.setdefault(MRC, []).append(100.0 * doc["mrc_val"]["accuracy"])
    return {m: {s: mean_std(v) for s, v in cells.items()} for m, cells in table.items()}


def differences(table: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Relation-enhanced minus baseline per skill: difference of means and its standard error."""
    out: dict[str, dict[str, dict]] = {}
    for model, base in PAIRS:
        if model not in table or base not in table:
            continue
        cells = {}
        for skill in SKILLS:
            a, b = table[model].get(skill), table[base].get(skill)
            if a and b:
                se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
                cells[skill] = {"diff": a["mean"] - b["mean"], "se": se}
        out[f"{model}-{base}"] = cells
    return out


def curves(docs: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """Per model and plotted skill: mean and std over seeds at every checkpoint step."""
    out: dict[str, dict[str, list[dict]]] = {}
    for model in dict.fromkeys(d["model"] for d in docs):
        runs = [d for d in docs if d["model"] == model]
        steps = sorted({r["step"] for d in runs for r in d["rows"]})
        for skill in PLOTTED:
            points = []
            for step in steps:
                values = [float(r[skill]) for d in runs for r in d["rows"]
                          if r["step"] == step and r.get(skill) is not None]
                if values:
                    stats = mean_std(values)
                    points.append({"step": step, "mean": stats["mean"], "std": stats["std"], "n": stats["n"]})
            out.setdefault(model, {})[skill] = points
    return out


def chance(meta: dict) -> dict[str, float]:
    """Accuracy of guessing: 50% for the true/false and foil probes, one in the gallery size for R@1."""
    images = meta.get("data", {}).get("probes", {}).get("retrieval_test_images") or 0
    out = {"vsr_dev": 50.0, "vsr_test": 50.0, "valse": 50.0}
    if images:
        out |= {"coco_tr1": 100.0 / images, "coco_ir1": 100.0 / images}
    return out


def _cell(stats: dict | None) -> str:
    return "" if not stats else f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def table_markdown(table: dict[str, dict[str, dict]], chance_row: dict[str, float] | None = None,
                   mrc: bool = True) -> str:
    """One row per model, one column per probe (mean ± std over seeds)."""
    columns = list(SKILLS) + ([MRC] if mrc else [])
    header = ["model", *[SKILLS.get(c, "MRC accuracy (val)") for c in columns]]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(columns)]
    for model, cells in table.items():
        row = [NAMES.get(model, model), *[_cell(cells.get(c)) for c in columns]]
        lines.append("| " + " | ".join(row) + " |")
    if chance_row:
        row = [f"{chance_row[c]:.1f}" if c in chance_row else "" for c in columns]
        lines.append("| " + " | ".join(["chance", *row]) + " |")
    return "\n".join(lines) + "\n"


def diff_markdown(diffs: dict[str, dict[str, dict]]) -> str:
    """Relation-enhanced minus baseline, per probe (± standard error of the difference)."""
    lines = ["| difference | " + " | ".join(SKILLS.values()) + " |", "|---|" + "---:|" * len(SKILLS)]
    for pair, cells in diffs.items():
        model, base = pair.split("-")
        name = f"{NAMES.get(model, model)} − {NAMES.get(base, base)}"
        values = [f"{cells[s]['diff']:+.1f} ± {cells[s]['se']:.1f}" if s in cells else "" for s in SKILLS]
        lines.append("| " + " | ".join([name, *values]) + " |")
    return "\n".join(lines) + "\n"


def report_markdown(results: dict) -> str:
    """results.md: the tables, what they mean, the command."""
    meta = results["meta"]
    cfg, timing = meta["config"], meta["timing"]
    n_seeds = len(cfg["seeds"])
    lines = [
        "# Relations experiment",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"{len(cfg['models'])} models x {n_seeds} seeds, {cfg['steps']} steps each, "
        f"{results['samples_per_run']} images seen per run; wall time {timing['wall_seconds'] / 60:.1f} min "
        f"(data {timing['data_seconds']:.0f} s) on {meta['cpus']} CPUs.",
        "",
        f"## Last checkpoint (step {cfg['steps']}), accuracy % mean ± std over seeds",
        "",
        table_markdown(results["table"], chance(meta)),
        "## Relation data minus its baseline (difference of means ± standard error)",
        "",
        diff_markdown(results["differences"]),
        "## Checkpoint selected by retrieval dev TR@1",
        "",
        table_markdown(results["selected_table"], chance(meta), mrc=False),
        "Probes: held-out colour/shape pairs (training/experiment/heldout.py); VSR-style: a true and a false "
        "caption per image (p(match) > 0.5 rule); VALSE-style: caption vs the same caption with the opposite "
        "relation; retrieval: ITC top-k re-ranked by ITM, captions that name objects only. MRC accuracy: the "
        "MRC head on the scene-graph val split (training pairs), "
        f"majority-class rate {results.get('mrc_majority_rate') or 0:.1f}%.",
        "",
        "![skills over steps](skills.png)",
        "",
    ]
    return "\n".join(lines)


def plot_curves(curve: dict[str, dict[str, list[dict]]], chance_row: dict[str, float], title: str) -> bytes:
    """The skill-over-steps PNG: one panel per probe, mean over seeds per model, ± std shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"albef": ("tab:blue", "--"), "realbef": ("tab:blue", "-"), "xvlm": ("tab:orange", "--"),
              "rexvlm": ("tab:orange", "-")}
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), dpi=72)
    for ax, skill in zip(axes.flat, PLOTTED, strict=True):
        for model, skills in curve.items():
            points = skills.get(skill, [])
            if not points:
                continue
            colour, line = styles.get(model, ("tab:grey", "-"))
            x = [p["step"] for p in points]
            y = [p["mean"] for p in points]
            spread = [p["std"] for p in points]
            ax.plot(x, y, line, color=colour, marker="o", markersize=3, label=NAMES.get(model, model))
            ax.fill_between(x, [a - b for a, b in zip(y, spread, strict=True)],
                            [a + b for a, b in zip(y, spread, strict=True)], color=colour, alpha=0.12)
        if skill in chance_row:
            ax.axhline(chance_row[skill], color="grey", linewidth=0.8, linestyle=":", label="chance")
            if chance_row[skill] == 50.0:  # the pairwise and true/false probes: a fixed window around chance
                low, high = ax.get_ylim()
                ax.set_ylim(min(low, 30.0), max(high, 70.0))
        ax.set_title(SKILLS.get(skill) or NAMES.get(skill, skill), fontsize=10)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel("%", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def write_report(docs: list[dict], meta: dict, out: str | Path) -> dict:
    """results.json, results.md and skills.png under ``out``; returns the results."""
    out = Path(out)
    table = aggregate(docs)
    samples = sorted({d["samples"] for d in docs})
    majority = [100.0 * d["mrc_val"]["majority_rate"] for d in docs if d.get("mrc_val")]
    results = {
        "meta": meta,
        "samples_per_run": samples[0] if len(samples) == 1 else samples,
        "table": table,
        "selected_table": aggregate(docs, where="selected"),
        "differences": differences(table),
        "chance": chance(meta),
        "mrc_majority_rate": statistics.fmean(majority) if majority else None,
        "curves": curves(docs),
        "runs": docs,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out / "results.md").write_text(report_markdown(results))
    title = (f"held-out probes over training steps: mean over {len(meta['config']['seeds'])} seeds (± std), "
             f"{results['samples_per_run']} images per run")
    (out / "skills.png").write_bytes(plot_curves(results["curves"], chance(meta), title))
    return results
