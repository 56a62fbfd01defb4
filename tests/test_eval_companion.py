"""The companion study's tables, reproduced exactly from its released per-example scores (shared/data/companion),
and ``sgv eval --from-scores`` / ``--compare`` on those files and on generated ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sgverbalise.cli.main import main as sgv
from sgverbalise.training.eval.rescore import tables_from_scores
from tests.conftest import SHARED_DATA

MODELS = ("albef_4m", "x-vlm_4m")


@pytest.fixture(scope="module")
def companion() -> Path:
    path = SHARED_DATA / "companion"
    if not (path / "reference.json").exists():
        pytest.skip(f"companion scores {path} are absent (set SGV_SHARED_DATA to their parent folder)")
    return path


def _printed(value: float, like: float, suite: str) -> str:
    """``value`` as the study printed it: percent with one decimal, Winoground with two."""
    return f"{value:.2f}" if suite == "winoground" else f"{value:.1f}"


@pytest.mark.parametrize("model", MODELS)
def test_every_printed_figure_is_reproduced_from_the_released_scores(companion: Path, model: str):
    reference = json.loads((companion / "reference.json").read_text())
    tables, files = tables_from_scores(f"{companion}@{model}", bootstrap=0)
    assert len(files) == 4  # VALSE, VSR dev and test, Winoground
    checked = 0
    for suite, per_model in reference.items():
        for figure, printed in per_model[model].items():
            got = tables[suite]["figures"][figure]
            assert _printed(got, printed, suite) == _printed(printed, printed, suite), (suite, figure)
            checked += 1
    assert checked == sum(len(per_model[model]) for per_model in reference.values())
    assert tables["valse"]["n"] == {"pairs": 7702}
    assert (tables["vsr_dev"]["n"], tables["vsr_test"]["n"]) == ({"captions": 1012}, {"captions": 2024})
    assert tables["winoground"]["n"] == {"examples": 400}


def test_the_released_repository_layout_is_read_too(companion: Path, tmp_path: Path):
    """outputs/<BENCH>/<model>/<model>*.jsonl, several models side by side, as e-bug/fine-grained-evals has them."""
    outputs = tmp_path / "outputs"
    for model in MODELS:
        for folder in ("VALSE", "VSR_random", "Winoground"):
            for f in (companion / folder).glob(f"{model}*.jsonl"):
                (outputs / folder / model).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, outputs / folder / model / f.name)
    nested, _ = tables_from_scores(f"{outputs}@x-vlm_4m", bootstrap=0)
    flat, _ = tables_from_scores(f"{companion}@x-vlm_4m", bootstrap=0)
    assert {n: t["figures"] for n, t in nested.items()} == {n: t["figures"] for n, t in flat.items()}
    assert sgv(["eval", "--from-scores", str(outputs), "--bootstrap", "0"]) == 2  # two models: pick one


def test_from_scores_cli_json_and_intervals(companion: Path, capsys, tmp_path: Path):
    code = sgv(["eval", "--from-scores", f"{companion}@albef_4m", "--json", "--bootstrap", "200",
                "--out", str(tmp_path / "t")])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    reference = json.loads((companion / "reference.json").read_text())
    assert f"{doc['tables']['valse']['overall']:.1f}" == f"{reference['valse']['albef_4m']['overall']:.1f}"
    assert set(doc["tables"]["vsr_test"]) == set(reference["vsr_test"]["albef_4m"])
    assert set(doc["tables"]["winoground"]) == {"text", "image", "group"}
    lo, hi = doc["ci95"]["valse"]["overall"]
    assert lo < doc["tables"]["valse"]["overall"] < hi and hi - lo < 3
    assert doc["details"]["vsr_dev"]["baseline"]["majority_class"] in (0, 1)
    assert doc["details"]["valse"]["pieces"]["counting"] > 0
    assert len(doc["meta"]["score_files"]) == 4 and all(len(h) == 64 for h in doc["meta"]["score_files"].values())
    assert json.loads((tmp_path / "t" / "tables.json").read_text())["tables"] == doc["tables"]


def test_markdown_prints_figures_as_the_study_did(companion: Path, capsys):
    assert sgv(["eval", "--from-scores", f"{companion}@x-vlm_4m", "--bootstrap", "0"]) == 0
    text = capsys.readouterr().out
    reference = json.loads((companion / "reference.json").read_text())
    wino, valse = reference["winoground"]["x-vlm_4m"], reference["valse"]["x-vlm_4m"]
    assert f"| text | {wino['text']:.2f} |" in text and f"| group | {wino['group']:.2f} |" in text
    assert f"| overall | {valse['overall']:.1f} |" in text and "VALSE paper" in text


def test_compare_two_published_models(companion: Path, capsys):
    code = sgv(["eval", "--compare", f"{companion}@x-vlm_4m", f"{companion}@albef_4m", "--json",
                "--bootstrap", "200"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)["tables"]
    valse = doc["valse"]["figures"]["overall"]
    assert valse["diff"] == pytest.approx(valse["a"] - valse["b"]) and valse["diff"] > 2
    assert valse["ci95"][0] > 0 and valse["p"] < 0.01
    assert doc["valse"]["units"]["pairs"]["common"] == 7702


# ---- generated companion-format files ------------------------------------------------------------------------


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    return path


def _generated(root: Path) -> Path:
    valse = []
    for i, (c, f) in enumerate([(0.9, 0.1), (0.2, 0.3), (0.6, 0.6)]):
        for typ, s in (("caption", c), ("foil", f)):
            valse.append({"label": f"{i}_{typ[0]}", "score": s, "instrument": "existence", "piece": "existence",
                          "type": typ, "id": i})
    _write(root / "VALSE" / "m.jsonl", valse)
    _write(root / "VSR_random" / "m_dev.jsonl", [{"label": 1, "score": 0.5, "relation": "on", "id": 0},
                                                 {"label": 0, "score": 0.5, "relation": "near", "id": 1}])
    wino = [{"label": f"0_c{c}_i{i}", "score": s} for (c, i), s in
            zip([(0, 0), (0, 1), (1, 0), (1, 1)], [0.9, 0.1, 0.2, 0.8], strict=True)]
    _write(root / "Winoground" / "m.jsonl", wino)
    return root


def test_generated_companion_files(tmp_path: Path, capsys):
    root = _generated(tmp_path / "out")
    assert sgv(["eval", "--from-scores", str(root), "--json", "--bootstrap", "0"]) == 0  # one model: no @ needed
    tables = json.loads(capsys.readouterr().out)["tables"]
    assert tables["valse"]["overall"] == pytest.approx(100 / 3)
    assert tables["vsr_dev"] == {"proximity": 0.0, "topological": 100.0, "overall": 50.0}
    assert tables["winoground"] == {"text": 100.0, "image": 100.0, "group": 100.0}
    assert "vsr_test" not in tables


def test_a_model_file_in_a_folder_named_otherwise(tmp_path: Path, capsys):
    """outputs/Winoground/albef_4m_ours/albef_4m_ours_07.jsonl (one epoch of the study's own run) is model
    albef_4m_ours_07; the folder name is no model."""
    root = _generated(tmp_path / "out")
    epoch = root / "Winoground" / "m_ours" / "m_ours_07.jsonl"
    epoch.parent.mkdir()
    shutil.copy(root / "Winoground" / "m.jsonl", epoch)
    assert sgv(["eval", "--from-scores", str(root), "--bootstrap", "0"]) == 2
    assert "m, m_ours_07" in capsys.readouterr().err
    tables, files = tables_from_scores(f"{root}@m_ours_07", bootstrap=0)
    assert files == [str(epoch)] and tables["winoground"]["figures"]["group"] == 100.0


def _svo_line(row: int, side: str, score: float, negated: tuple[str, ...]) -> dict:
    """A line of the companion study's outputs/SVO/<model>/<model>.jsonl (as its SVO notebook prints it)."""
    return {"label": f"{row}_{side}", "score": score, "pos_triplet": "girl,stand,grass",
            "neg_triplet": "dog,stand,grass", **{f"{p}_neg": p in negated for p in ("subj", "verb", "obj")}}


def test_companion_svo_lines_give_the_pairwise_rule_only(tmp_path: Path, capsys):
    root = _generated(tmp_path / "out")
    rows = [(0.9, 0.1, ("subj",)), (0.2, 0.3, ("verb",)), (0.6, 0.5, ("subj", "obj"))]
    _write(root / "SVO" / "m" / "m.jsonl", [_svo_line(i, side, score, neg) for i, (p, n, neg) in enumerate(rows)
                                             for side, score in (("p", p), ("n", n))])
    assert sgv(["eval", "--from-scores", f"{root}@m", "--json", "--bootstrap", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # no sentence or image in the lines: the official per-pair accuracies cannot be recomputed
    assert doc["tables"]["svo"] == {"pairwise": pytest.approx(200 / 3)}
    assert doc["details"]["svo"]["pairwise_by_negated"] == {"mixed": 100.0, "subj": 100.0, "verb": 0.0}
    _write(root / "SVO" / "m" / "m.jsonl", [_svo_line(0, "p", 0.9, ("subj",))])
    assert sgv(["eval", "--from-scores", f"{root}@m", "--bootstrap", "0"]) == 2
    assert "lack their _p or _n line" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: _write(r / "Winoground" / "m.jsonl", [{"label": "0_c0_i0", "score": 0.3}]), "lack one of"),
        (lambda r: _write(r / "VSR_random" / "m_dev.jsonl", ["{oops"]), "not JSON"),
        (lambda r: _write(r / "VSR_random" / "m_dev.jsonl", [{"label": 2, "score": 0.1, "relation": "on"}]), "label"),
        (lambda r: _write(r / "VALSE" / "m.jsonl", [{"label": "0_c", "score": 0.1, "instrument": "a",
                                                     "type": "caption", "id": 0}]), "lack a caption or a foil"),
    ],
)
def test_bad_score_files_exit_2_with_one_line(tmp_path: Path, capsys, damage, message):
    root = _generated(tmp_path / "out")
    damage(root)
    assert sgv(["eval", "--from-scores", str(root), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_missing_source_and_no_data_exit_2(tmp_path: Path, capsys):
    assert sgv(["eval", "--from-scores", str(tmp_path / "nothing")]) == 2
    assert "no score files" in capsys.readouterr().err
    assert sgv(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err


def test_winoground_breakdown_joins_the_tags_of_examples_jsonl(tmp_path: Path, capsys):
    root = _generated(tmp_path / "out")
    wino = tmp_path / "bench" / "winoground" / "examples.jsonl"
    _write(wino, [{"id": 0, "caption_0": "a", "caption_1": "b", "image_0": "x", "image_1": "y", "tag": "Noun",
                   "secondary_tag": "Symbolic", "num_main_preds": 1, "collapsed_tag": "Object"}])
    args = ["eval", "--from-scores", str(root), "--json", "--bootstrap", "0"]
    assert sgv([*args, "--data", str(tmp_path / "bench")]) == 0
    doc = json.loads(capsys.readouterr().out)
    tags = doc["details"]["winoground"]["by_tag"]
    assert tags["collapsed_tag"]["Object"]["group"] == 100.0 and tags["num_main_preds"]["1"]["n"] == 1
    assert tags["secondary_tag"] == {"Symbolic": {"text": 100.0, "image": 100.0, "group": 100.0, "n": 1}}
    assert str(wino) in doc["meta"]["score_files"]
    assert sgv(args) == 0
    assert "by_tag" not in json.loads(capsys.readouterr().out)["details"]["winoground"]


def test_compare_pairs_our_score_file_with_a_companion_model_by_id(tmp_path: Path, capsys):
    from sgverbalise.training.eval.scorefiles import write_scores

    root = _generated(tmp_path / "out")  # VALSE ids existence/0, /1, /2
    ours = [{"suite": "valse", "mode": "itm", "id": f"existence/{i}", "instrument": "existence",
             "piece": "existence", "caption": 0.9, "foil": 0.1} for i in (1, 2, 7)]
    write_scores(ours, str(tmp_path / "mine" / "scores" / "valse.jsonl"))
    assert sgv(["eval", "--compare", str(tmp_path / "mine"), f"{root}@m", "--json", "--bootstrap", "50"]) == 0
    valse = json.loads(capsys.readouterr().out)["tables"]["valse"]
    assert valse["units"]["pairs"] == {"common": 2, "only_a": 1, "only_b": 1}
    # on the common examples 1 and 2: ours right on both, the companion file's model wrong on both
    assert valse["figures"]["overall"]["a"] == 100.0 and valse["figures"]["overall"]["b"] == 0.0


# ---- bench/companion.py: the study's printed tables against ours, every model --------------------------------


def _notebook(path: Path, cells: list[tuple[str, str]]) -> None:
    """A notebook of code cells (source, printed text), as Jupyter saves it."""
    nb = {"cells": [{"cell_type": "code", "source": src.splitlines(keepends=True),
                     "outputs": [{"name": "stdout", "output_type": "stream", "text": out}] if out else []}
                    for src, out in cells]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


def _checkout(root: Path, valse_overall: str = "33.3") -> Path:
    """A checkout of the study's repository in miniature: outputs/, notebooks/ printing model m, the tags."""
    _generated(root / "outputs")
    names = 'models = {\n    "m": "M$_{x}$",\n}'
    _notebook(root / "notebooks" / "VALSE.ipynb", [
        (names, ""),
        ("for model in models:\n    res_dict = {}\n    for k in ['existence']:\n        pass",
         f"M$_{{x}}$ & 33.3 & {valse_overall} \\\\\n"),
    ])
    _notebook(root / "notebooks" / "VSR.ipynb", [
        (names, ""),
        ("cat2relation = {\n    'proximity': ['near'],\n    'topological': ['on'],\n}", ""),
        ("for model in models:\n    open(f'{model}_dev.jsonl')\n    res_dict = {}",
         "M$_{x}$ & 0.0 & 100.0 & 50.0 \\\\\n"),
    ])
    _notebook(root / "notebooks" / "Winoground.ipynb", [
        ('model_to_name = {"m": "M$_{x}$"}', ""),
        ('print(tabulate(get_table_dict(models), floatfmt=".2f"))',
         "--------  ------  ------  ------\nM$_{x}$   100.00  100.00  100.00\n--------  ------  ------  ------\n"),
        ('t = get_table_dict(models, filter_examples(filter_dict={"secondary_tag": "Symbolic"}))\nprint(tabulate(t))',
         "M$_{x}$   100.00  100.00  100.00\n"),
    ])
    _write(root / "data" / "winoground" / "data" / "examples.jsonl",
           [{"id": 0, "caption_0": "a", "caption_1": "b", "image_0": "x", "image_1": "y", "tag": "Noun",
             "secondary_tag": "Symbolic", "num_main_preds": 1, "collapsed_tag": "Object"}])
    return root


def test_bench_companion_compares_every_printed_figure(tmp_path: Path, capsys):
    from bench.companion import main as companion

    assert companion(["--repo", str(_checkout(tmp_path / "fge")), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| m | 2/2 | 3/3 | 6/6 | - |" in out and "11/11 printed figures reproduced" in out
    assert "| m | 33.3 | 33.3 | 50.0 | - | 100.00 | 100.00 | 100.00 | 11/11 | - |" in out
    assert companion(["--repo", str(_checkout(tmp_path / "bad", valse_overall="40.0"))]) == 1
    out = capsys.readouterr().out
    assert "valse/overall: printed 40.0, ours 33.3" in out and "| m | 1/2 |" in out
