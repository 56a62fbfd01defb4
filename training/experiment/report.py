"""The experiment's report: probe accuracy mean ± std per model over seeds, a table, the skills over steps.

``results.json`` holds the meta (command, settings, timing, data counts), per model and skill the values of
the last checkpoint of every seed with their mean and (sample) standard deviation, the same at the checkpoint
selected by the retrieval dev TR@1 (the paper's selection signal), the differences of each arm to its baseline
paired by seed (mean of the per-seed differences with its 95% t interval), the curves (mean and std over seeds
at every checkpoint) and every run's own numbers. ``summary.json`` is the same without the curves and the
runs; ``results.md`` the tables; ``skills.png`` the curves.
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
    "vsr_test_auc": "VSR-style test AUC, true vs false (no threshold)",
    "valse": "VALSE-style foils",
    "coco_itc_tr1": "retrieval TR@1 (ITC)",
    "coco_tr1": "retrieval TR@1 (ITM re-rank)",
    "coco_ir1": "retrieval IR@1 (ITM re-rank)",
    "itm_auc": "ITM AUC true vs shuffled",
    "relation_pairs": "relation vs its opposite (training-like scenes)",
    "position_side": "which side is the named object on (fused [CLS])",
}
PLOTTED: tuple[str, ...] = ("vsr_dev", "vsr_test", "valse", "coco_itc_tr1", "coco_tr1", "coco_dev_tr1")
NAMES: dict[str, str] = {"albef": "ALBEF", "realbef": "REALBEF", "xvlm": "X-VLM", "rexvlm": "REX-VLM",
                         "realbef-foils": "REALBEF + relation foils (beyond the paper)",
                         "rexvlm-foils": "REX-VLM + relation foils (beyond the paper)",
                         "upper": "upper bound (probe-style supervision)",
                         "upper-xvlm": "upper bound, X-VLM losses (probe-style supervision)",
                         "coco_dev_tr1": "retrieval dev TR@1 (selection)"}
PAIRS: tuple[tuple[str, str], ...] = (("realbef", "albef"), ("rexvlm", "xvlm"), ("realbef-foils", "albef"),
                                      ("realbef-foils", "realbef"), ("rexvlm-foils", "xvlm"),
                                      ("rexvlm-foils", "rexvlm"), ("upper", "albef"),
                                      ("upper-xvlm", "xvlm"))
MRC = "mrc_val"
ITM_CHECK = "itm_check"
RELATION_CHECK = "relation_check"
POSITION_CHECK = "position_check"
# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (then the normal's 1.96)
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    return T95[df - 1] if df <= len(T95) else 1.96


def mean_std(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), count and the values."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def _at_step(doc: dict, step: int) -> dict:
    return next(r for r in doc["rows"] if r["step"] == step)


def run_values(doc: dict, where: str = "last") -> dict[str, float]:
    """skill -> value of one run at its last (or its ``selected``) checkpoint; at the last one also the MRC
    accuracy and the ITM and relation checks. Empty for a run without checkpoints."""
    if not doc["rows"]:
        return {}
    row = doc["rows"][-1] if where == "last" else _at_step(doc, doc["selected"]["step"])
    values = {k: float(row[k]) for k in SKILLS if row.get(k) is not None}
    if where != "last":
        return values
    if doc.get(MRC):
        values[MRC] = 100.0 * doc[MRC]["accuracy"]
    if doc.get(ITM_CHECK):
        values["itm_auc"] = float(doc[ITM_CHECK]["auc"])
    if doc.get(RELATION_CHECK):
        values["relation_pairs"] = float(doc[RELATION_CHECK]["accuracy"])
    if doc.get(POSITION_CHECK):
        values["position_side"] = float(doc[POSITION_CHECK]["side_accuracy"])
    return values


def aggregate(docs: list[dict], where: str = "last") -> dict[str, dict[str, dict]]:
    """Per model and skill, mean ± std over seeds of the last (or the ``selected``) checkpoint's values."""
    table: dict[str, dict[str, list[float]]] = {}
    for doc in docs:
        values = run_values(doc, where)
        if values:
            cells = table.setdefault(doc["model"], {})
            for skill, value in values.items():
                cells.setdefault(skill, []).append(value)
    return {m: {s: mean_std(v) for s, v in cells.items()} for m, cells in table.items()}


def differences(docs: list[dict]) -> dict[str, dict[str, dict]]:
    """Arm minus its baseline per skill, paired by seed: mean of the per-seed differences, their sample std,
    the 95% t interval of the mean (none with one seed) and the per-seed differences."""
    out: dict[str, dict[str, dict]] = {}
    for model, base in PAIRS:
        arm, ref = ({d["seed"]: run_values(d) for d in docs if d["model"] == name} for name in (model, base))
        seeds = sorted(set(arm) & set(ref))
        if not seeds:
            continue
        cells = {}
        for skill in SKILLS:
            diffs = [arm[s][skill] - ref[s][skill] for s in seeds if skill in arm[s] and skill in ref[s]]
            if not diffs:
                continue
            stats = mean_std(diffs)
            half = t95(len(diffs) - 1) * stats["std"] / math.sqrt(len(diffs)) if len(diffs) > 1 else None
            cells[skill] = {"diff": stats["mean"], "std": stats["std"], "n": len(diffs), "values": diffs,
                            "ci95": None if half is None else [stats["mean"] - half, stats["mean"] + half]}
        out[f"{model}:{base}"] = cells
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
    out = {"vsr_dev": 50.0, "vsr_test": 50.0, "vsr_test_auc": 50.0, "valse": 50.0, "itm_auc": 50.0,
           "relation_pairs": 50.0, "position_side": 50.0}
    if images:
        out |= {"coco_itc_tr1": 100.0 / images, "coco_tr1": 100.0 / images, "coco_ir1": 100.0 / images}
    return out


def _reused(results: dict, timing: dict) -> str:
    """What the wall time leaves out when complete runs were reused (their own training and evaluation time)."""
    if not timing.get("runs_reused"):
        return ""
    train = sum(r.get("train_seconds") or 0 for r in results["runs"])
    evaluate = sum(r.get("eval_seconds") or 0 for r in results["runs"])
    return (f", reusing {timing['runs_reused']} complete runs (their training {train:.0f} s and evaluation "
            f"{evaluate:.0f} s were spent by the invocation that made them)")


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


def _diff_cell(cell: dict | None) -> str:
    if not cell:
        return ""
    if cell["ci95"] is None:
        return f"{cell['diff']:+.1f}"
    return f"{cell['diff']:+.1f} [{cell['ci95'][0]:+.1f}, {cell['ci95'][1]:+.1f}]"


def diff_markdown(diffs: dict[str, dict[str, dict]]) -> str:
    """Arm minus baseline, per probe: mean paired difference [95% interval over seeds]."""
    lines = ["| difference | " + " | ".join(SKILLS.values()) + " |", "|---|" + "---:|" * len(SKILLS)]
    for pair, cells in diffs.items():
        model, base = pair.split(":")
        name = f"{NAMES.get(model, model)} − {NAMES.get(base, base)}"
        values = [_diff_cell(cells.get(s)) for s in SKILLS]
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
        f"(data {timing['data_seconds']:.0f} s) on {meta['cpus']} CPUs" + _reused(results, timing) + ".",
        "",
        f"## Last checkpoint (step {cfg['steps']}), accuracy % mean ± std over seeds",
        "",
        table_markdown(results["table"], chance(meta)),
        *(["## Each arm minus its baseline: mean of the per-seed differences [95% t interval over seeds]", "",
           diff_markdown(results["differences"])] if results["differences"] else []),
        "## Checkpoint selected by retrieval dev TR@1",
        "",
        table_markdown(results["selected_table"], chance(meta), mrc=False),
        "Probes: held-out colour/shape pairs (training/experiment/heldout.py); VSR-style: a true and a false "
        "caption per image (p(match) > 0.5 rule); VALSE-style: caption vs the same caption with the opposite "
        "relation; retrieval: captions that name objects only, ranked by ITC alone and by ITC's top k re-ranked "
        "by ITM; ITM AUC: p(match) of each test image's own caption against another image's (50 = none)."
        + (" MRC accuracy: the MRC head on the scene-graph val split (training pairs), majority-class rate "
           f"{results['mrc_majority_rate']:.1f}%." if results.get("mrc_majority_rate") is not None else ""),
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
              "rexvlm": ("tab:orange", "-"), "realbef-foils": ("tab:green", "-"), "rexvlm-foils": ("tab:red", "-"),
              "upper": ("tab:grey", "-."),
              "upper-xvlm": ("tab:grey", ":")}
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
        "differences": differences(docs),
        "chance": chance(meta),
        "mrc_majority_rate": statistics.fmean(majority) if majority else None,
        "curves": curves(docs),
        "runs": docs,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    summary = {k: v for k, v in results.items() if k not in ("curves", "runs")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    (out / "results.md").write_text(report_markdown(results))
    title = (f"held-out probes over training steps: mean over {len(meta['config']['seeds'])} seeds (± std), "
             f"{results['samples_per_run']} images per run")
    (out / "skills.png").write_bytes(plot_curves(results["curves"], chance(meta), title))
    return results
