"""The wheel a user installs: one import root (``sgverbalise``), configs shipped as package data, and ``sgv demo``
working from a folder outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


SOURCES = {"schemas": "sgverbalise/schemas", "pipelines": "sgverbalise/pipelines", "training": "sgverbalise/training",
           "cli": "sgverbalise/cli", "configs": "sgverbalise/configs", "sgverbalise": "sgverbalise"}
# what a checkout holds besides its sources: setuptools' build/ would carry modules deleted since into the wheel
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "out", "*.egg-info", "__pycache__", ".*cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tree, out = tmp_path_factory.mktemp("tree") / "src", tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, tree, ignore=NOT_SOURCES)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(tree)], check=True, capture_output=True)
    (found,) = out.glob("sgverbalise-*.whl")
    return found


def test_wheel_modules_are_the_checkouts_modules(wheel):
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    expected = {f"{SOURCES[p.relative_to(REPO).parts[0]]}/{p.relative_to(REPO / p.relative_to(REPO).parts[0])}"
                for folder in SOURCES for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts}
    assert shipped == expected


def test_wheel_has_one_import_root_and_ships_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert roots == {"sgverbalise"}
    for needed in ("sgverbalise/pipelines/build_shards.py", "sgverbalise/training/loop.py", "sgverbalise/synth/web.py",
                   "sgverbalise/schemas/sample.schema.json", "sgverbalise/cli/main.py",
                   "sgverbalise/configs/tiny-realbef.yaml", "sgverbalise/configs/experiment/albef.yaml"):
        assert needed in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the dependencies already installed here (torch, Beam, ...) are reused; the project comes from the wheel only
    packages = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    deps = [p for p in sys.path if p.endswith("site-packages")]  # this interpreter's, including any it chains to
    (packages / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    away = tmp_path / "elsewhere"
    away.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import sgverbalise.pipelines as p, importlib.util as u; print(p.__file__); "
         "print(u.find_spec('pipelines'), u.find_spec('training'), u.find_spec('schemas'))"],
        cwd=away, check=True, capture_output=True, text=True).stdout.split("\n")
    assert where[0].startswith(str(packages)) and where[1] == "None None None"
    done = subprocess.run([str(venv / "bin" / "sgv"), "demo", "--out", "demo", "--images", "24", "--show", "1",
                           "--train-steps", "2"], cwd=away, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (away / "demo" / "shards" / "manifest.json").is_file()
    assert list((away / "demo" / "train").glob("step-*"))
