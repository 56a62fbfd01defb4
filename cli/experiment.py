"""``sgv experiment relations``: does VSG + MRC data teach a model relations? A small, reproducible answer.

Steps (everything under ``out``):

1. ``data/``: a synthetic VG + GQA corpus with images (``sgverbalise.synth``), the keys of its images that
   show a held-out colour/shape pair (``data/exclude_image_ids.txt``), ``build-shards`` with those excluded
   (``data/sg``: VSG + MRC shards), a web set of training scenes with alt-text captions (``data/web``), a
   WordPiece tokenizer on the training texts (``data/tokenizer``) and the held-out probes (``data/probes``,
   ``training.experiment.probes``). Reused when ``data/data.json`` says it was made with the same settings.
2. ``runs/{model}-seed{seed}/``: one training run per model and seed from ``configs/experiment/{model}.yaml``
   (same architecture, steps and batch size per batch type in every config), a checkpoint every
   ``ckpt_every`` steps, then ``sweep`` over the probes (``runs/.../sweep/``) and, for models with an MRC
   head, MRC accuracy on the scene-graph val split; ``run.json`` holds it all and marks the run complete
   (a rerun skips complete runs, adding checks they lack, and resumes interrupted ones; ``results.json``'s
   timing counts the runs it reused, whose own seconds are in their run.json).
3. ``results.json``, ``results.md`` and ``skills.png`` (``training.experiment.report``).

Samples seen: the images in the batches of all optimizer steps (what the trainer counts). Every batch type
has the same batch size in the experiment's configs, so each model sees ``steps x batch size`` images:
ALBEF spends all of them on caption batches, REALBEF half on captions and a quarter each on VSG and MRC.
Runs go ``jobs`` at a time in separate processes, one torch thread each.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shlex
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sgverbalise.configs import config_path
from sgverbalise.training.config import RunConfig, load_config
from sgverbalise.training.experiment.probes import ProbeSizes

log = logging.getLogger(__name__)

MODELS: tuple[str, ...] = ("albef", "realbef", "realbef-foils", "upper")
CONFIG_DIR = config_path("experiment")
SUITES: tuple[str, ...] = ("vsr", "valse", "coco", "coco_dev")
RUN_FILE = "run.json"
DATA_FILE = "data.json"
TRAINING_SETS: tuple[str, ...] = ("sg", "web", "web-statements")  # under out/data: what a config's sources may name


@dataclass(frozen=True)
class ExperimentConfig:
    """What the experiment runs; ``smoke()`` is the few-step version the tests run."""

    out: str = "out/experiment"
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1500
    ckpt_every: int = 300
    sg_images: int = 5000  # synthetic VG + GQA images before the held-out ones are excluded
    web_images: int = 48000  # one per caption-batch image of ALBEF's 1,500 steps: no web image is seen twice
    pixel_stats_images: int = 2000  # web images whose pixel mean and std normalise every model's input
    image_size: int = 128  # side of the generated JPEGs (the models see 64 px)
    probes: ProbeSizes = field(default_factory=ProbeSizes)
    data_seed: int = 0
    jobs: int = 2
    k_test: int = 16  # ITC candidates re-ranked by ITM in retrieval
    relation_scenes: int = 200  # fresh training-like scenes of the relation check (checks.relation_check)
    position_scenes: int = 600  # fresh scenes of the position check (checks.position_check), a third held out
    configs: str = str(CONFIG_DIR)
    overrides: tuple[str, ...] = ()  # more --set overrides for every run

    def smoke(self) -> ExperimentConfig:
        """One seed, a few steps, a few dozen images: the whole pipeline in well under a minute."""
        return replace(self, seeds=self.seeds[:1], steps=4, ckpt_every=2, sg_images=60, web_images=64,
                       pixel_stats_images=16,
                       probes=ProbeSizes(vsr_dev=6, vsr_test=6, valse=6, retrieval_test=6, retrieval_dev=6),
                       k_test=4, jobs=1, relation_scenes=20, position_scenes=30)

    def data_settings(self) -> dict[str, Any]:
        """The settings that decide ``data/`` (its cache key)."""
        return {"sg_images": self.sg_images, "web_images": self.web_images, "image_size": self.image_size,
                "probes": asdict(self.probes), "data_seed": self.data_seed,
                "pixel_stats_images": self.pixel_stats_images, "statements": True,
                "probe_predicates": "mutual"}


def command_line(cfg: ExperimentConfig, smoke: bool = False) -> str:
    """The ``sgv`` command that runs ``cfg``."""
    parts = ["sgv", "experiment", "relations", "--out", cfg.out]
    if smoke:
        return shlex.join([*parts, "--smoke"])
    parts += ["--seeds", str(len(cfg.seeds)), "--steps", str(cfg.steps), "--ckpt-every", str(cfg.ckpt_every),
              "--jobs", str(cfg.jobs)]
    if cfg.models != MODELS:
        parts += ["--models", ",".join(cfg.models)]
    for item in cfg.overrides:
        parts += ["--set", item]
    return shlex.join(parts)


# ---------------------------------------------------------------------------------------------------- data


def prepare_data(cfg: ExperimentConfig) -> dict[str, str]:
    """Corpus, scene-graph shards, web shards, tokenizer and probes under ``out/data`` (reused when made with
    the same settings); returns their paths."""
    root = Path(cfg.out) / "data"
    paths = {name: str(root / name) for name in (*TRAINING_SETS, "tokenizer", "probes")}
    stamp = root / DATA_FILE
    if stamp.is_file() and json.loads(stamp.read_text()).get("settings") == cfg.data_settings():
        return paths
    from sgverbalise.pipelines.build_shards import run_config
    from sgverbalise.pipelines.options import BuildConfig
    from sgverbalise.storage import absolute
    from sgverbalise.synth import synthesize
    from sgverbalise.synth.web import write_web_shards
    from sgverbalise.tools.paths import resolve
    from sgverbalise.tools.stats import compute_stats
    from sgverbalise.training.data.tokenizer import shard_texts, train_tokenizer
    from sgverbalise.training.experiment.corpus import STATEMENTS_WEB_STYLE, WEB_STYLE, heldout_image_keys
    from sgverbalise.training.experiment.probes import write_probes
    from sgverbalise.verbalise import VSGConfig

    stamp.unlink(missing_ok=True)
    shutil.rmtree(Path(cfg.out) / "runs", ignore_errors=True)  # trained on other data
    started = time.perf_counter()
    corpus = root / "corpus"
    synthesize(str(corpus), cfg.sg_images, seed=cfg.data_seed, with_images=True, image_size=cfg.image_size)
    gqa = corpus / "gqa" / "train_sceneGraphs.json"
    excluded = heldout_image_keys(str(corpus / "vg"), str(gqa))
    exclude_file = root / "exclude_image_ids.txt"
    exclude_file.write_text("".join(k + "\n" for k in excluded))
    build = BuildConfig(
        out=paths["sg"], vg=str(corpus / "vg"), vg_images=(absolute(str(corpus / "vg")),), gqa=(str(gqa),),
        gqa_images=absolute(str(corpus / "gqa" / "images")), exclude_image_ids=str(exclude_file),
        vsg=VSGConfig(attributes=1, seed=cfg.data_seed), val_fraction=0.05, samples_per_shard=500,
    )
    manifest = run_config(build, [])
    web = write_web_shards(paths["web"], cfg.web_images, seed=cfg.data_seed, samples_per_shard=500,
                           image_size=cfg.image_size, style=WEB_STYLE)
    write_web_shards(paths["web-statements"], cfg.web_images, seed=cfg.data_seed, samples_per_shard=500,
                     image_size=cfg.image_size, style=STATEMENTS_WEB_STYLE)  # the upper arm's: same scenes
    pixels = compute_stats(resolve(paths["web"]), images=cfg.pixel_stats_images)["pixels"]
    tokenizer = train_tokenizer(shard_texts([paths["sg"], paths["web"]]), paths["tokenizer"], vocab_size=400,
                                min_frequency=1)
    probes = write_probes(paths["probes"], cfg.probes, seed=cfg.data_seed, image_size=cfg.image_size)
    summary = {
        "settings": cfg.data_settings(),
        "corpus_images": cfg.sg_images,
        "excluded_images": len(excluded),
        "sg_samples": {s: manifest["splits"][s]["samples"] for s in manifest["splits"]},
        "web_samples": web["samples"],
        "pixels": pixels,
        "tokenizer_size": len(tokenizer),
        "probes": probes["counts"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    stamp.write_text(json.dumps(summary, indent=2) + "\n")
    return paths


# ---------------------------------------------------------------------------------------------------- runs


def run_settings(
    cfg: ExperimentConfig, data: dict[str, str], model: str, seed: int, run_dir: Path
) -> RunConfig:
    """One run's config: ``{model}.yaml`` with the user's ``--set`` overrides, then this run's data paths,
    steps, seed, checkpoints and quiet bookkeeping (the experiment's own settings win)."""
    pixels = json.loads((Path(cfg.out) / "data" / DATA_FILE).read_text())["pixels"]
    normalise = [f"model.vision.image_mean={json.dumps(pixels['mean'])}",
                 f"model.vision.image_std={json.dumps(pixels['std'])}"]
    base = load_config(Path(cfg.configs) / f"{model}.yaml", normalise + list(cfg.overrides))
    train = replace(
        base.train, out=str(run_dir), steps=cfg.steps, seed=seed, ckpt_every=cfg.ckpt_every,
        milestone_every=cfg.ckpt_every, keep_last=1, resume=any(run_dir.glob("step-*")), progress=False,
        tensorboard=False, threads=1,
    )
    # each source the config names under out/experiment/data (web, web-statements, sg) becomes this run's copy
    sources = {kind: [data[_data_set(source.urls, model)] for source in base.data.sources[kind]]
               for kind in base.data.active_types()}
    data_cfg = replace(base.data, sources=sources, tokenizer=data["tokenizer"], seed=seed)
    return replace(base, train=train, data=data_cfg)


def _data_set(urls: str | list[str], model: str) -> str:
    name = Path(urls).name if isinstance(urls, str) else ""
    if name not in TRAINING_SETS:
        raise ValueError(f"{model}.yaml: data source {urls!r} is not one of the experiment's data sets "
                         f"(out/experiment/data/: {', '.join(TRAINING_SETS)})")
    return name


def run_one(cfg: ExperimentConfig, data: dict[str, str], model: str, seed: int) -> dict[str, Any]:
    """Train one model with one seed, sweep its checkpoints over the probes; returns (and writes) run.json."""
    import torch

    from sgverbalise.training.eval.ours import OursScorer
    from sgverbalise.training.eval.runner import EvalConfig
    from sgverbalise.training.eval.sweep import sweep, sweep_markdown
    from sgverbalise.training.experiment.checks import itc_retrieval, itm_check, vsr_auc
    from sgverbalise.training.loop import train

    run_dir = Path(cfg.out) / "runs" / f"{model}-seed{seed}"
    done = run_dir / RUN_FILE
    if done.is_file():
        previous = json.loads(done.read_text())
        if previous.get("steps") == cfg.steps and previous.get("ckpt_every") == cfg.ckpt_every:
            return _add_missing_checks(cfg, previous, run_dir, done)
        shutil.rmtree(run_dir)  # made with other settings: its checkpoints cannot be resumed
    torch.set_num_threads(1)
    run_cfg = run_settings(cfg, data, model, seed, run_dir)
    started = time.perf_counter()
    summary = train(run_cfg)
    trained = time.perf_counter()
    eval_cfg = EvalConfig(data=data["probes"], suites=SUITES, k_test=cfg.k_test, progress=False)

    def load(checkpoint: str) -> OursScorer:
        return OursScorer(checkpoint, device="cpu")

    result = sweep(str(run_dir), eval_cfg, load, str(run_dir / "sweep"))
    (run_dir / "sweep" / "sweep.md").write_text(sweep_markdown(result))
    for row in result.rows:
        row.update(itc_retrieval(_step_sweep(run_dir, row["step"]) / "results.json"))
        row.update(vsr_auc(_step_sweep(run_dir, row["step"])))
    last = OursScorer(result.rows[-1]["checkpoint"], device="cpu")
    itm = itm_check(last, data["probes"])
    mrc = None
    if run_cfg.model.use_mrc:
        from sgverbalise.training.evaluate_mrc import evaluate_mrc

        found = evaluate_mrc(last.model, data["sg"], last.tokenizer, split="val")
        mrc = {k: found[k] for k in ("accuracy", "majority_rate", "triplets")}
    doc = {
        "model": model,
        "seed": seed,
        "steps": summary["step"],
        "ckpt_every": cfg.ckpt_every,
        "samples": summary["samples"],
        "batch_types": dict(sorted(Counter(row["type"] for row in summary["history"]).items())),
        "train_seconds": round(trained - started, 1),
        "eval_seconds": round(time.perf_counter() - trained, 1),
        "rows": [{k: v for k, v in row.items() if k != "checkpoint"} for row in result.rows],
        "selected": result.selected,
        "mrc_val": mrc,
        "itm_check": itm,
        **{name: check(last) for name, check in _last_checks(cfg).items()},
    }
    done.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return doc


def _last_checks(cfg: ExperimentConfig) -> dict[str, Any]:
    """The checks of a run's last checkpoint that need only its scorer, by their run.json key."""
    from sgverbalise.training.experiment.checks import position_check, relation_check

    return {"relation_check": lambda scorer: relation_check(scorer, cfg.relation_scenes),
            "position_check": lambda scorer: position_check(scorer, cfg.position_scenes,
                                                            test=cfg.position_scenes // 3)}


def _step_sweep(run_dir: Path, step: int) -> Path:
    """The sweep's folder of one checkpoint of a run (results.json, scores/)."""
    return run_dir / "sweep" / f"step-{step}"


def _add_missing_checks(cfg: ExperimentConfig, doc: dict[str, Any], run_dir: Path, done: Path) -> dict[str, Any]:
    """A complete run from before one of ``_last_checks`` or the VSR-style AUC existed gets it, from its last
    checkpoint or its sweep's score files (run.json rewritten); other runs come back as they are."""
    from sgverbalise.training.experiment.checks import vsr_auc

    missing = {name: check for name, check in _last_checks(cfg).items() if name not in doc}
    old_rows = [row for row in doc["rows"] if "vsr_test_auc" not in row
                and (_step_sweep(run_dir, row["step"]) / "scores" / "vsr.jsonl").is_file()]
    if not (missing or old_rows) or not doc["rows"]:
        return doc
    rows = [{**row, **vsr_auc(_step_sweep(run_dir, row["step"]))} if row in old_rows else row
            for row in doc["rows"]]
    doc = {**doc, "rows": rows}
    if missing:
        from sgverbalise.training.checkpoint import step_name
        from sgverbalise.training.eval.ours import OursScorer

        last = run_dir / step_name(doc["rows"][-1]["step"])
        if last.is_dir():
            scorer = OursScorer(str(last), device="cpu")
            doc = {**doc, **{name: check(scorer) for name, check in missing.items()}}
    done.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return doc


def _run_in_child(cfg: ExperimentConfig, data: dict[str, str], model: str, seed: int) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING)
    return run_one(cfg, data, model, seed)


def run_all(cfg: ExperimentConfig, data: dict[str, str]) -> list[dict[str, Any]]:
    """Every (model, seed) run, ``jobs`` at a time (in this process when ``jobs`` is 1), model by model in the
    order of ``models`` (so the first arms are complete first when the budget runs out)."""
    plan = [(model, seed) for model in cfg.models for seed in cfg.seeds]
    if cfg.jobs <= 1:
        docs = []
        for model, seed in plan:
            docs.append(run_one(cfg, data, model, seed))
            _report_run(docs[-1])
        return docs
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=context) as pool:
        futures = [pool.submit(_run_in_child, cfg, data, model, seed) for model, seed in plan]
        docs = []
        for future in futures:
            docs.append(future.result())
            _report_run(docs[-1])
    return docs


def _report_run(doc: dict[str, Any]) -> None:
    last = doc["rows"][-1] if doc["rows"] else {}
    skills = " ".join(f"{k} {v:.1f}" for k, v in sorted(last.items()) if k != "step")
    log.info("%s seed %d: %d steps (%d images) in %.0f s + eval %.0f s; last: %s", doc["model"], doc["seed"],
             doc["steps"], doc["samples"], doc["train_seconds"], doc["eval_seconds"], skills)


def run_experiment(cfg: ExperimentConfig, command: str | None = None) -> dict[str, Any]:
    """Data, runs, aggregation: writes results.json, results.md and skills.png under ``cfg.out``; returns the
    results."""
    from sgverbalise.training.config import plain
    from sgverbalise.training.experiment.report import write_report

    unknown = [m for m in cfg.models if not (Path(cfg.configs) / f"{m}.yaml").is_file()]
    if unknown:
        raise ValueError(f"no config for {unknown} in {cfg.configs}")
    started = time.perf_counter()
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg)
    prepared = time.perf_counter()
    log.info("data ready in %.0f s: %s", prepared - started, data)
    runs = Path(cfg.out) / "runs"
    reused = sum((runs / f"{m}-seed{s}" / RUN_FILE).is_file() for m in cfg.models for s in cfg.seeds)
    docs = run_all(cfg, data)
    now = time.perf_counter()
    timing = {"data_seconds": round(prepared - started, 1), "runs_seconds": round(now - prepared, 1),
              "wall_seconds": round(now - started, 1), "runs_reused": reused}
    data_summary = json.loads((Path(cfg.out) / "data" / DATA_FILE).read_text())
    meta = {"command": command or command_line(cfg), "config": plain(asdict(cfg)), "timing": timing,
            "data": data_summary, "cpus": os.cpu_count()}
    return write_report(docs, meta, cfg.out)
