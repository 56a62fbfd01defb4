"""The ``sgv`` command line: user errors are one line on stderr and exit 2 (a bug keeps its traceback), Beam's
options pass through where Beam runs, --version, defaults in --help, -v on either side of the command, progress
bars only on a terminal."""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from sgverbalise.cli import main as cli
from sgverbalise.cli.main import build_parser, main
from sgverbalise.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-corpus")
    synthesize(str(root), 8, seed=0)
    return root


def one_error_line(capsys, *named: str) -> str:
    """The stderr of a run that failed: exactly one line, naming each of ``named``."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    for text in named:
        assert text in err, err
    return err


def exit_code(argv: list[str]) -> int:
    """``main``'s return value, or the code of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# ------------------------------------------------------------------------------------------ unknown options


def test_misspelt_option_of_a_beam_job_is_named_and_nothing_runs(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["build-shards", "--vg", f"{corpus}/vg", "--out", str(out), "--sampels-per-shard", "3"]
    assert exit_code(argv) == 2
    one_error_line(capsys, "sgv build-shards: error:", "--sampels-per-shard 3")
    assert not out.exists()


@pytest.mark.parametrize("command", [["inspect", "x"], ["train"], ["synth", "--out", "x", "--images", "1"]])
def test_misspelt_option_of_any_command_is_one_line(command, capsys):
    assert exit_code([*command, "--jsno"]) == 2
    one_error_line(capsys, "error: unrecognized arguments: --jsno")


def test_beam_jobs_take_no_abbreviations_of_their_options(corpus, tmp_path, capsys):
    assert exit_code(["build-shards", "--vg", f"{corpus}/vg", "--out", str(tmp_path), "--samples", "3"]) == 2
    one_error_line(capsys, "--samples 3")


@pytest.mark.parametrize("mode", [["--direct_running_mode=multi_threading"],
                                  ["--direct_running_mode", "multi_threading"]])
@pytest.mark.parametrize("command", ["build-shards", "ingest", "demo"])
def test_refused_mode_is_refused_in_both_forms_before_any_work(command, mode, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--out", str(out)] if command == "demo" else ["--vg", f"{corpus}/vg", "--out", str(out)]
    assert exit_code([command, *argv, *mode]) == 2
    one_error_line(capsys, f"sgv {command}: error: --direct_running_mode=multi_threading is refused")
    assert not out.exists()  # the demo had not written its corpus yet


@pytest.mark.parametrize("workers", [["--direct_num_workers=1"], ["--direct_num_workers", "1"]])
def test_beam_options_pass_through_in_both_forms_without_warnings(workers, corpus, tmp_path, caplog):
    out = tmp_path / "shards"
    with caplog.at_level(logging.WARNING):
        assert main(["build-shards", "--vg", f"{corpus}/vg", "--out", str(out), "--samples-per-shard", "3",
                     *workers]) == 0
    assert (out / "manifest.json").exists() and len(list((out / "train").glob("*.tar"))) > 1
    unparsed = [r.getMessage() for r in caplog.records if "nparseable" in r.getMessage()]
    assert not unparsed  # the workers too: no options the project passes are discarded


# ---------------------------------------------------------------------------------------------- user errors


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("args", "named"), [
    (["--vg", "/nonexistent"], "--vg /nonexistent: no such file or folder"),
    (["--vg", "VG", "--gqa", "/nonexistent.json"], "--gqa /nonexistent.json: no such file or folder"),
    (["--vg", "VG", "--out", "FILE"], "is a file"),
    (["--vg", "VG", "--out", "FILE/under"], "is a file, not a folder"),
    (["--vg", "VG", "--exclude-coco-ids", "IDS"], "line 2: 'abc' is not a COCO id"),
    (["--vg", "VG", "--samples-per-shard", "0"], "--samples-per-shard must be at least 1, got 0"),
    (["--vg", "VG", "--vsg-k", "0"], "--vsg-k must be at least 1"),
    (["--vg", "VG", "--direct_num_workers", "two"], "--direct_num_workers: invalid int value: 'two'"),
    (["--vg", "VG", "--records", "REC"], "--records replaces --vg"),
    (["--records", "REC"], "no ingest.json under"),
    ([], "give --vg and/or --gqa, or --records"),
])
def test_build_shards_user_errors_are_one_line_and_exit_2(args, named, corpus, tmp_path, capsys):
    places = {"VG": f"{corpus}/vg", "FILE": _write(tmp_path / "a-file", "x"), "REC": str(tmp_path),
              "IDS": _write(tmp_path / "ids.txt", "123  # a comment\nabc\n")}
    args = [places.get(a, a.replace("FILE", places["FILE"])) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    assert exit_code(["build-shards", *args]) == 2
    one_error_line(capsys, "sgv build-shards: error:", named)


@pytest.mark.parametrize(("argv", "named"), [
    (["ingest", "--vg", "/nonexistent", "--out", "OUT"], "--vg /nonexistent: no such file or folder"),
    (["ingest", "--vg", "VG", "--out", "OUT", "--records-per-file", "0"], "--records-per-file must be at least 1"),
    (["verbalise", "--vg", "/nonexistent"], "--vg /nonexistent: no such file or folder"),
    (["verbalise", "--vg", "VG", "--k", "0"], "k >= 1"),
    (["verbalise"], "give exactly one of --vg or --gqa"),
    (["vocab", "--gqa", "/nonexistent.json", "--out", "OUT"], "--gqa /nonexistent.json: no such file"),
])
def test_other_commands_user_errors_are_one_line(argv, named, corpus, tmp_path, capsys):
    argv = [{"VG": f"{corpus}/vg", "OUT": str(tmp_path / "out")}.get(a, a) for a in argv]
    assert exit_code(argv) == 2
    one_error_line(capsys, f"sgv {argv[0]}: error:", named)


def test_train_config_errors_are_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    assert exit_code(["train", "--set", "train.stepz=3"]) == 2
    one_error_line(capsys, "sgv train: error:", "train.stepz")
    assert exit_code(["train", "--set", "train.steps=many"]) == 2
    one_error_line(capsys, "train.steps")
    assert exit_code(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    one_error_line(capsys, "none.yaml: no such file")
    assert exit_code(["train", "--config", _write(tmp_path / "bad.yaml", "train: [\n")]) == 2
    one_error_line(capsys, "is not valid YAML")
    assert exit_code(["train", "--config", _write(tmp_path / "typo.yaml", "trian: {steps: 3}\n")]) == 2
    one_error_line(capsys, "unknown section 'trian'")


def test_a_bug_keeps_its_traceback_and_v_logs_a_user_errors_traceback(monkeypatch, corpus, caplog, capsys):
    def broken(args, extra):
        raise KeyError("a bug")

    monkeypatch.setattr("sgverbalise.cli.commands.verbalise.run", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["verbalise", "--vg", f"{corpus}/vg"])
    monkeypatch.undo()
    with caplog.at_level(logging.DEBUG, logger=cli.__name__):
        assert main(["verbalise", "--vg", "/nonexistent", "-v"]) == 2
    assert any(r.exc_info and r.exc_info[0].__name__ == "InputError" for r in caplog.records)
    one_error_line(capsys, "--vg /nonexistent")


# ----------------------------------------------------------------------------------- version, help, -v


def test_version_is_the_installed_distributions():
    done = subprocess.run([sys.executable, "-m", "sgverbalise.cli", "--version"], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == f"sgv {metadata.version('sgverbalise')}"


def test_help_shows_defaults_and_the_top_level_help_is_plain_text(capsys):
    for argv in (["build-shards", "--help"], ["train-tokenizer", "--help"], ["--help"]):
        assert exit_code(argv) == 0
    out = capsys.readouterr().out
    assert "default: 1000" in out  # --samples-per-shard, which has no help text of its own
    assert "WordPiece vocabulary size (default: 8000)" in out
    assert "default: None" not in out and "``" not in out and "--version" in out


@pytest.mark.parametrize(("argv", "verbose"), [
    (["-v", "inspect", "x"], True), (["inspect", "x", "-v"], True), (["inspect", "--verbose", "x"], True),
    (["inspect", "x"], False),
])
def test_verbose_before_or_after_the_command(argv, verbose):
    args, _ = build_parser("inspect").parse_known_args(argv)
    assert args.verbose is verbose


# ------------------------------------------------------------------------------------------ progress bars


def test_training_writes_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    """A tiny ``sgv train`` with progress on (the config's default) and stderr a pipe: no carriage returns."""
    pytest.importorskip("torch")
    from sgverbalise.pipelines.build_shards import run
    from sgverbalise.synth.web import write_web_shards
    from sgverbalise.training.data.tokenizer import shard_texts, train_tokenizer

    corpus, sg, web, tok = (tmp_path / n for n in ("corpus", "sg", "web", "tok"))
    synthesize(str(corpus), 16, seed=0, with_images=True, image_size=32)
    run(["--vg", f"{corpus}/vg", "--vg-images", f"{corpus}/vg", "--out", str(sg), "--direct_num_workers=1"])
    write_web_shards(str(web), 16, seed=0, samples_per_shard=16, image_size=32)
    train_tokenizer(shard_texts([str(sg), str(web)]), tok, vocab_size=200, min_frequency=1)
    sets = [f"data.sources.caption=[{web}]", f"data.sources.vsg=[{sg}]", f"data.sources.mrc=[{sg}]",
            f"data.tokenizer={tok}", f"train.out={tmp_path / 'run'}", "train.steps=3", "train.tensorboard=false",
            "train.ckpt_every=3", "data.shuffle_buffer=8", "data.shuffle_initial=4"]
    config = ROOT / "configs" / "tiny-realbef.yaml"
    command = [sys.executable, "-m", "sgverbalise.cli", "train", "--config", str(config),
               *(a for s in sets for a in ("--set", s))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr and "step/s" not in done.stderr and "steps_run" in done.stdout


def test_a_beam_jobs_user_error_is_the_only_line_on_stderr(tmp_path):
    """Importing Beam logs a warning about the optional GCP client on the root logger: not above the error."""
    done = subprocess.run([sys.executable, "-m", "sgverbalise.cli", "build-shards", "--vg", str(tmp_path / "none"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"sgv build-shards: error: --vg {tmp_path / 'none'}: no such file or folder"]
