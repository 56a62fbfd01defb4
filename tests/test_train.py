"""The training loop on real shards: schedules, configs, checkpoints, exact resume, DDP on CPU, learning."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from sgverbalise.cli.main import main as sgv_main  # noqa: E402
from sgverbalise.synth.web import write_web_shards  # noqa: E402
from sgverbalise.training import checkpoint as ckpt  # noqa: E402
from sgverbalise.training.config import ConfigError, RunConfig, TrainConfig, load_config  # noqa: E402
from sgverbalise.training.data.tokenizer import load_tokenizer, shard_texts, train_tokenizer  # noqa: E402
from sgverbalise.training.evaluate_mrc import evaluate_mrc  # noqa: E402
from sgverbalise.training.loop import TrainState, align_model_config, health_warnings, train  # noqa: E402
from sgverbalise.training.models import PRESETS, RelationVLM, build_model  # noqa: E402
from sgverbalise.training.schedule import lr_at  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-realbef.yaml"


def build_corpus(root: Path, images: int, seed: int = 0, web: int = 64) -> dict[str, Path]:
    """Synthetic VG + GQA scenes with images through build-shards, a web shard set and a tokenizer."""
    from sgverbalise.pipelines.build_shards import run
    from sgverbalise.synth import synthesize

    corpus, sg = root / "corpus", root / "sg"
    synthesize(str(corpus), images, seed=seed, with_images=True, image_size=64)
    run([
        "--vg", str(corpus / "vg"), "--vg-images", str(corpus / "vg"),
        "--gqa", str(corpus / "gqa" / "train_sceneGraphs.json"),
        "--gqa-images", str(corpus / "gqa" / "images"),
        "--out", str(sg), "--samples-per-shard", "20", "--val-fraction", "0.2", "--seed", str(seed),
        "--vsg-attributes", "1", "--vocab-sources", "all",
    ])  # fmt: skip
    write_web_shards(str(root / "web"), web, seed=seed, samples_per_shard=16, image_size=64)
    train_tokenizer(shard_texts([str(sg), str(root / "web")]), root / "tok", vocab_size=300, min_frequency=1)
    return {"sg": sg, "web": root / "web", "tok": root / "tok"}


def overrides(data: dict[str, Path], out: Path, *more: str) -> list[str]:
    """The tiny config's paths pointed at ``data`` and ``out``, quiet, plus ``more``."""
    return [
        f"data.sources.caption=[{data['web']}]",
        f"data.sources.vsg=[{data['sg']}]",
        f"data.sources.mrc=[{data['sg']}]",
        f"data.tokenizer={data['tok']}",
        f"train.out={out}",
        "train.progress=false",
        "train.tensorboard=false",
        *more,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return build_corpus(tmp_path_factory.mktemp("corpus"), 100)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread (conftest)


# ---------------------------------------------------------------------------------------------- schedule


def test_warmup_then_cosine_linear_constant():
    assert [lr_at(s, 1.0, 10, warmup=4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, 1.0, 10, warmup=4) == 1.0  # decay starts from the peak
    assert lr_at(10, 1.0, 10, warmup=4, min_lr=0.1) == pytest.approx(0.1)
    assert lr_at(7, 1.0, 10, warmup=4, schedule="cosine") == pytest.approx(0.5)  # half-way: half the cosine
    assert lr_at(7, 1.0, 10, warmup=4, schedule="linear", min_lr=0.2) == pytest.approx(0.6)
    assert lr_at(9, 1.0, 10, warmup=4, schedule="constant") == 1.0
    assert lr_at(50, 1.0, 10, warmup=4, min_lr=0.1) == pytest.approx(0.1)  # past the end
    cosine = [lr_at(s, 1.0, 100, warmup=10) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(0, 1.0, 10, schedule="step")


# ------------------------------------------------------------------------------------------------ config


def test_every_config_loads_with_the_paper_recipe():
    for name in ("albef", "realbef", "xvlm", "rexvlm"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert cfg.model.name == name and cfg.model.vision.image_size == cfg.data.image_size == 224
        t = cfg.train
        assert (t.lr, t.weight_decay, t.warmup, t.steps) == (1e-4, 0.02, 5000, 200_000)
        assert cfg.betas == ((0.9, 0.995) if "albef" in name else (0.9, 0.95))
        assert set(cfg.data.active_types()) <= set(cfg.model.batch_types)
    realbef = load_config(ROOT / "configs" / "realbef.yaml")
    assert realbef.data.batch_sizes == {"caption": 512, "entity": 0, "mrc": 128, "vsg": 128}
    rexvlm = load_config(ROOT / "configs" / "rexvlm.yaml")
    assert rexvlm.data.ratios == {"caption": 2.0, "entity": 1.5, "mrc": 1.0, "vsg": 1.0}
    assert rexvlm.data.batch_sizes == {"caption": 1024, "entity": 1024, "mrc": 256, "vsg": 128}


def test_overrides_are_typed_and_checked(tmp_path):
    cfg = load_config(TINY, [
        "train.steps=7", "train.lr=3e-4", "train.betas=[0.8, 0.9]", "train.milestones=[4, 2]",
        "train.clip=null", "train.out=123", "data.batch_sizes.mrc=5", "data.ratios.caption=0",
        "model.weights.mrc=2", "model.vision.dropout=0.1", "data.seed=9",
    ])  # fmt: skip
    t = cfg.train
    assert (t.steps, t.lr, t.betas, t.milestones) == (7, 3e-4, (0.8, 0.9), [2, 4])
    assert t.clip is None and t.out == "123"
    assert cfg.betas == (0.8, 0.9)
    assert cfg.data.batch_sizes == {"caption": 16, "entity": 0, "mrc": 5, "vsg": 8}  # merged with the preset
    assert cfg.data.ratios["caption"] == 0.0 and cfg.data.ratios["mrc"] == 1.0 and cfg.data.seed == 9
    assert cfg.model.weights.mrc == 2.0 and cfg.model.vision.dropout == 0.1
    assert cfg.model.vision.hidden_size == 32  # tiny sizes kept
    assert load_config(TINY).data.seed == load_config(TINY).train.seed  # data.seed follows train.seed
    bad = {
        "train.steps=many": "train.steps",
        "train.stepz=3": "unknown option train.stepz",
        "model.vision.depth=3": "unknown option model.vision.depth",
        "train.resume=maybe": "train.resume",
        "train.betas=[0.9]": "train.betas",
        "data.batch_sizes.mrc=1.5": "data.batch_sizes.mrc",
        "optim.lr=1": "unknown section",
        "train.schedule=step": "schedule must be one of",
        "model.vision.image_size=64": "differs from model.vision.image_size",
        "data.max_text_len.vsg=112": "max_position",
        "data.ratios.entity=1": "batch size 0",
        "train.steps": "section.key=value",
    }
    for item, message in bad.items():
        with pytest.raises((ConfigError, ValueError), match=message):
            load_config(TINY, [item])
    with pytest.raises(ConfigError, match="does not train on"):
        load_config(TINY, ["data.ratios.entity=1", "data.batch_sizes.entity=2", "data.sources.entity=[x]"])
    # the resolved config reads back to an equal one
    text = yaml.safe_dump(cfg.to_dict())
    again = RunConfig.from_dict(yaml.safe_load(text))
    assert again == cfg and again.to_dict() == cfg.to_dict()
    with pytest.raises(ConfigError, match="train.lr"):
        RunConfig.from_dict({"train": {"lr": "fast"}})
    assert TrainConfig().betas is None and RunConfig().betas == (0.9, 0.995)


def test_mrc_sources_must_share_the_heads_relation_vocabulary(data, tmp_path):
    import shutil

    same, other = tmp_path / "same", tmp_path / "other"
    for folder in (same, other):
        shutil.copytree(data["sg"], folder)
    vocab = json.loads((other / "relations.json").read_text())
    first, second = vocab["relations"][0], vocab["relations"][1]
    first["id"], second["id"] = second["id"], first["id"]  # two relations swap ids: same size, other meaning
    (other / "relations.json").write_text(json.dumps(vocab))
    tokenizer = load_tokenizer(data["tok"])
    size = len(json.loads((data["sg"] / "relations.json").read_text())["relations"])

    ok = load_config(TINY, overrides(data, tmp_path / "run", f"data.sources.mrc=[{data['sg']}, {same}]"))
    assert align_model_config(ok, tokenizer).model.num_relations == size
    bad = load_config(TINY, overrides(data, tmp_path / "run", f"data.sources.mrc=[{data['sg']}, {other}]"))
    with pytest.raises(ConfigError, match="relations.json.*build-shards --relations"):
        align_model_config(bad, tokenizer)
    # an explicit train.relations is checked against every source too
    pinned = load_config(TINY, overrides(data, tmp_path / "run", f"data.sources.mrc=[{data['sg']}]",
                                         f"train.relations={other / 'relations.json'}"))
    with pytest.raises(ConfigError, match="is not the MRC head's"):
        align_model_config(pinned, tokenizer)


def test_text_checkpoint_gives_the_vocabulary_size(data, tmp_path):
    """With model.text.init_path the folder's vocab_size wins over the config's (a tiny preset's 128), and a
    tokenizer larger than the checkpoint's vocabulary is refused, naming the folder."""
    from transformers import BertConfig

    tokenizer = load_tokenizer(data["tok"])
    for name, size in (("big", len(tokenizer) + 50), ("small", len(tokenizer) - 1)):
        BertConfig(vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64).save_pretrained(tmp_path / name)
    big = load_config(TINY, overrides(data, tmp_path / "run", f"model.text.init_path={tmp_path / 'big'}"))
    assert big.model.text.vocab_size != len(tokenizer) + 50
    assert align_model_config(big, tokenizer).model.text.vocab_size == len(tokenizer) + 50
    small = load_config(TINY, overrides(data, tmp_path / "run", f"model.text.init_path={tmp_path / 'small'}"))
    with pytest.raises(ConfigError, match="small"):
        align_model_config(small, tokenizer)
    (tmp_path / "empty").mkdir()
    empty = load_config(TINY, overrides(data, tmp_path / "run", f"model.text.init_path={tmp_path / 'empty'}"))
    with pytest.raises(ConfigError, match="empty gives no vocab_size"):
        align_model_config(empty, tokenizer)


def test_cli_print_config(capsys):
    assert sgv_main(["train", "--config", str(TINY), "--set", "train.steps=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 3 and printed["model"]["name"] == "realbef"
    assert printed["model"]["vision"]["image_size"] == 32


# ------------------------------------------------------------------------------------------- checkpoints


def _tiny_model() -> RelationVLM:
    torch.manual_seed(0)
    return build_model(PRESETS["realbef"]().tiny())


def test_checkpoints_are_atomic_kept_by_rule_and_round_trip(tmp_path):
    model = _tiny_model()
    optimizer = torch.optim.AdamW(model.param_groups(0.02), lr=1e-3)
    loss = sum(p.sum() for p in model.parameters() if p.requires_grad)
    loss.backward()
    optimizer.step()
    for step in range(1, 11):
        state = {**TrainState(step=step, epoch=step // 4, batch_in_epoch=step % 4).to_dict(), "world_size": 1}
        ckpt.save_checkpoint(tmp_path, step, model, optimizer, state)
        ckpt.prune(tmp_path, keep_last=3, milestones=[2], milestone_every=4)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 4, 8, 9, 10]
    folder = ckpt.latest(tmp_path)
    assert folder.name == "step-00000010"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "optimizer.pt", "rng-rank00000.pt", "trainer_state.json"
    ]  # fmt: skip
    # a half-written checkpoint (temporary folder, or a step folder without its state) is never "latest"
    (tmp_path / ".tmp-step-00000011").mkdir()
    (tmp_path / ".tmp-step-00000011" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "step-00000012").mkdir()
    assert ckpt.latest(tmp_path) == folder
    ckpt.prune(tmp_path, keep_last=3)
    assert not (tmp_path / ".tmp-step-00000011").exists()
    # the .pt files load with weights_only=True; everything comes back
    expected_rng = torch.get_rng_state()
    torch.rand(5)
    other = _tiny_model()
    other_opt = torch.optim.AdamW(other.param_groups(0.02), lr=1e-3)
    state = ckpt.load_checkpoint(folder, other, other_opt)
    assert state["step"] == 10 and TrainState.from_dict(state) == TrainState(10, 2, 2)
    assert torch.equal(torch.get_rng_state(), expected_rng)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert str(other_opt.state_dict()) == str(optimizer.state_dict())
    with pytest.raises(ValueError, match="another model config"):
        ckpt.load_checkpoint(folder, build_model(PRESETS["rexvlm"]().tiny()))


# ------------------------------------------------------------------------------------------------ loop


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_short_run_logs_metrics_and_checkpoints(data, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(TINY, overrides(data, out, "train.steps=6", "train.ckpt_every=4", "train.log_every=3"))
    summary = train(cfg)
    assert summary["step"] == 6 and summary["checkpoint"].endswith("step-00000006")
    rows = _rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        assert row["type"] in ("caption", "mrc", "vsg") and math.isfinite(row["loss"])
        assert row["samples_per_s"] > 0 and 0 <= row["data_wait"] <= 1 and row["lr"] > 0
        assert set(row) >= ({"itc", "itm", "mlm"} if row["type"] != "mrc" else {"mrc"})
    assert rows[2]["loader"]["samples_skipped"] == 0 and rows[2]["loader"]["batches"] == 3
    assert "loader" not in rows[3]
    assert [s for s, _ in ckpt.list_checkpoints(out)] == [4, 6]
    # the checkpoint is a model folder the evaluation reads, with its tokenizer
    model = RelationVLM.from_pretrained(out / "step-00000006")
    relations = json.loads((data["sg"] / "relations.json").read_text())["relations"]
    assert model.config.num_relations == len(relations)
    assert load_tokenizer(out / "step-00000006" / "tokenizer").vocab_size == model.config.text.vocab_size
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["steps"] == 6


def test_a_collapsed_run_says_so(data, tmp_path, caplog):
    # a few steps from scratch: the tiny model's image features are all alike and ITM sits at its prior. Every
    # ITC/ITM row of metrics.jsonl carries the feature spread and the ITM separation, and at the health check
    # step the trainer warns about both (log line, that step's row, the summary).
    out = tmp_path / "run"
    more = ("train.steps=4", "train.ckpt_every=4", "train.log_every=4", "train.health_check_step=4")
    with caplog.at_level(logging.WARNING, logger="sgverbalise.training.loop"):
        summary = train(load_config(TINY, overrides(data, out, *more)))
    rows = _rows(out)
    paired = [r for r in rows if r["type"] != "mrc"]
    assert paired and all(r["feature_cos"] > 0.95 and abs(r["itm_separation"]) < 0.05 for r in paired)
    assert all("feature_cos" not in r for r in rows if r["type"] == "mrc")
    assert "features collapsed" in caplog.text and "ITM does not separate" in caplog.text
    assert rows[-1]["warnings"] == summary["warnings"] and len(summary["warnings"]) == 2
    assert all("warnings" not in r for r in rows[:-1])


def test_health_warnings_of_a_healthy_window():
    healthy = [{"feature_cos": 0.4, "itm_separation": 0.3}, {"type": "mrc", "mrc": 1.0}]
    assert health_warnings(healthy) == []
    assert health_warnings([{"feature_cos": 0.99, "itm_separation": 0.3}])[0].startswith("features collapsed")
    assert health_warnings([{"feature_cos": 0.4, "itm_separation": 0.01}])[0].startswith("ITM does not separate")


def test_bf16_autocast_trains_every_batch_type(data, tmp_path):
    # the mixed precision of GPU runs, exercised on the CPU: every batch type runs under bf16 autocast, its
    # losses are finite and differ from the fp32 run's (autocast is really on), and the weights stay fp32
    common = ["train.steps=6", "train.ckpt_every=6", "data.num_workers=0"]
    runs = {p: train(load_config(TINY, overrides(data, tmp_path / p, *common, f"train.precision={p}")))
            for p in ("fp32", "bf16")}
    fp32, bf16 = (runs[p]["history"] for p in ("fp32", "bf16"))
    assert [r["type"] for r in bf16] == [r["type"] for r in fp32]
    assert {r["type"] for r in bf16} == {"caption", "mrc", "vsg"}
    assert all(math.isfinite(r["loss"]) for r in bf16)
    assert [r["loss"] for r in bf16] != [r["loss"] for r in fp32]
    model = RelationVLM.from_pretrained(tmp_path / "bf16" / "step-00000006")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_the_losses_of_an_uninterrupted_run(data, tmp_path, workers):
    # 9-batch epochs and a checkpoint every 5 steps: the run stops at step 7, mid-epoch, after its checkpoint
    # at step 5; the resumed run redoes steps 6-7 and crosses an epoch boundary
    common = ["train.steps=12", "train.ckpt_every=5", "data.epoch_batches=9", f"data.num_workers={workers}"]
    straight = train(load_config(TINY, overrides(data, tmp_path / "a", *common)))
    cut = tmp_path / "b"
    first = train(load_config(TINY, overrides(data, cut, *common, "train.stop_after=7")))
    assert first["step"] == 7 and [s for s, _ in ckpt.list_checkpoints(cut)] == [5]
    resumed = train(load_config(TINY, overrides(data, cut, *common, "train.resume=true")))
    assert resumed["resumed_from"].endswith("step-00000005")
    assert [r["step"] for r in resumed["history"]] == list(range(6, 13))
    assert resumed["history"] == straight["history"][5:]  # bit for bit
    assert first["history"][:5] == straight["history"][:5]
    timing = ("samples_per_s", "data_wait", "step_s", "loader")
    assert [{k: v for k, v in r.items() if k not in timing} for r in _rows(cut)] == [
        {k: v for k, v in r.items() if k not in timing} for r in _rows(tmp_path / "a")
    ]  # metrics.jsonl holds every step once, with the same values
    ranks = [json.loads((d / "ranks" / "rank00000.json").read_text()) for d in (tmp_path / "a", cut)]
    assert ranks[0]["parameters_sha256"] == ranks[1]["parameters_sha256"]
    assert {s for s, _ in ckpt.list_checkpoints(cut)} == {10, 12}  # keep_last 2 of the tiny config


def _sgv_train(data: dict[str, Path], out: Path, *more: str) -> list[str]:
    """The ``sgv train`` command line of the tiny config on ``data``, writing to ``out``."""
    sets = (a for item in overrides(data, out, *more) for a in ("--set", item))
    return [sys.executable, "-m", "sgverbalise.cli", "train", "--config", str(TINY), *sets]


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "data_wait", "step_s", "loader")} for r in rows]


@pytest.mark.slow
def test_killed_trainer_resumes_with_the_losses_of_an_uninterrupted_run(data, tmp_path):
    """SIGKILL the whole ``sgv train`` process group (trainer and loader workers) once its first checkpoint is
    on disk, run it again with --resume: every step after the checkpoint has the uninterrupted run's losses."""
    steps = 60
    common = [f"train.steps={steps}", "train.ckpt_every=10", "data.epoch_batches=25", "data.num_workers=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    done = subprocess.run(_sgv_train(data, straight, *common), capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    cut = tmp_path / "cut"
    with (tmp_path / "killed.log").open("w") as log:
        process = subprocess.Popen(_sgv_train(data, cut, *common), stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=ROOT, start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
            while not list(cut.glob("step-*")):  # a step-* folder is renamed into place only once complete
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.005)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    kept = [s for s, _ in ckpt.list_checkpoints(cut)]
    assert kept and kept[-1] < steps
    resumed_from = kept[-1]
    assert len(_rows(cut)) < steps
    done = subprocess.run([*_sgv_train(data, cut, *common), "--resume"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["resumed_from"].endswith(ckpt.step_name(resumed_from))
    assert summary["steps_run"] == steps - resumed_from
    rows, expected = _rows(cut), _rows(straight)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # every step once
    after = [r for r in rows if r["step"] > resumed_from]
    assert _without_timing(after) == _without_timing(expected[resumed_from:])  # the losses, bit for bit
    assert _without_timing(rows) == _without_timing(expected)
    assert not list(cut.glob(".tmp-*"))  # no half-written checkpoint is left behind
    assert [s for s, _ in ckpt.list_checkpoints(cut)] == [s for s, _ in ckpt.list_checkpoints(straight)]
    digests = [json.loads((d / "ranks" / "rank00000.json").read_text())["parameters_sha256"] for d in (straight, cut)]
    assert digests[0] == digests[1]


def test_resume_without_checkpoint_starts_fresh(data, tmp_path):
    summary = train(load_config(TINY, overrides(data, tmp_path / "r", "train.steps=2", "train.resume=true")))
    assert summary["resumed_from"] is None and summary["step"] == 2


# --------------------------------------------------------------------------------------------- DDP on CPU


@pytest.mark.slow
def test_two_cpu_processes_under_torchrun_read_disjoint_shards_and_agree(data, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sgverbalise.cli", "train", "--config", str(TINY),
        *(a for item in overrides(data, out, "train.steps=4", "train.ckpt_every=4", "data.resampled=false",
                                  "data.keep_keys=true") for a in ("--set", item)),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank{r:05d}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [4, 4]
    assert ranks[0]["parameters_sha256"] == ranks[1]["parameters_sha256"]  # identical weights after the steps
    keys = []
    for rank in (0, 1):
        lines = (out / "ranks" / f"keys-rank{rank:05d}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["step"] for r in rows] == [1, 2, 3, 4]
        keys.append(rows)
    assert [r["type"] for r in keys[0]] == [r["type"] for r in keys[1]]  # the same batch type on every rank
    for kind in {r["type"] for r in keys[0]}:  # each type's stream splits its shards over the ranks: disjoint
        seen = [{k for r in rows if r["type"] == kind for k in r["keys"]} for rows in keys]
        assert seen[0] and seen[1] and not seen[0] & seen[1], kind
    assert json.loads(done.stdout[done.stdout.index("{"):])["world_size"] == 2
    saved = RelationVLM.from_pretrained(out / "step-00000004")
    assert ckpt.read_state(out / "step-00000004")["world_size"] == 2
    rng_files = sorted(p.name for p in (out / "step-00000004").glob("rng-*"))
    assert rng_files == ["rng-rank00000.pt", "rng-rank00001.pt"]
    assert saved.config.name == "realbef"


# ------------------------------------------------------------------------------------------------ learning


@pytest.mark.slow
def test_tiny_realbef_learns_relations_from_pictures(tmp_path):
    """MRC on held-out synthetic scenes (relations true in the picture) well above the majority-class rate."""
    data = build_corpus(tmp_path / "corpus", 1200, seed=3, web=256)
    out = tmp_path / "learn"
    cfg = load_config(TINY, overrides(
        data, out,
        "train.steps=1600", "train.lr=2e-3", "train.warmup=20", "train.ckpt_every=1600",
        "train.log_every=500",
        "data.ratios.mrc=3", "data.ratios.vsg=1", "data.ratios.caption=1",
        "data.batch_sizes.mrc=32", "data.batch_sizes.vsg=16", "data.batch_sizes.caption=16",
        "data.num_workers=2", "data.epoch_batches=1600",
    ))  # fmt: skip
    summary = train(cfg)
    model = RelationVLM.from_pretrained(summary["checkpoint"])
    result = evaluate_mrc(model, str(data["sg"]), load_tokenizer(data["tok"]), split="val")
    print(json.dumps({k: v for k, v in result.items() if k not in ("labels", "predicted")}))
    assert result["triplets"] > 1000
    assert result["accuracy"] > result["majority_rate"] + 0.15, result
    assert result["accuracy"] > 2 * result["majority_rate"], result
    history = summary["history"]
    for kind, loss in (("mrc", "mrc"), ("vsg", "mlm"), ("caption", "mlm")):
        values = [r[loss] for r in history if r["type"] == kind]
        assert sum(values[-20:]) / 20 < 0.9 * sum(values[:20]) / 20, (kind, loss)
