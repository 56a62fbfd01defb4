"""Security of the data paths: nothing is ever unpickled, tar member names are never paths, credentials and
signed URLs never reach logs or outputs, Pillow's decompression-bomb guard stays on."""

from __future__ import annotations

import ast
import io
import json
import pickle
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from badinputs import bomb_jpeg, jpeg
from helpers import REPO, check_output
from PIL import Image
from s3 import ENV, s3_server  # noqa: F401  (the fixture)

from sgverbalise.cli.main import COMMANDS
from sgverbalise.cli.main import main as sgv_main
from sgverbalise.shards import ShardError, read_shard, write_shard

PACKAGES = ("schemas", "sgverbalise", "pipelines", "training")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


class _Payload:
    """Unpickling this creates the file ``path``: proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _unsafe_calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"import {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = ast.unparse(node.func.value)
            kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name == "load" and owner == "torch" and kwargs.get("weights_only") != "True":
                found.append("torch.load without weights_only=True")
            elif name == "load" and owner in ("np", "numpy") and kwargs.get("allow_pickle") == "True":
                found.append("numpy.load(allow_pickle=True)")
            elif (name in ("load", "load_all", "unsafe_load") and owner == "yaml"
                  and "Safe" not in kwargs.get("Loader", "Safe")) or name == "unsafe_load":
                found.append(f"yaml.{name} with an unsafe loader")
            elif name in ("read_pickle", "from_pickle"):
                found.append(f"{owner}.{name}")
    return found


def test_no_pickle_in_any_data_path():
    """Shards, manifests, relations.json, rejects and checkpoints are read without unpickling."""
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            offenders += [f"{path.relative_to(REPO)}: {what}" for what in _unsafe_calls(tree)]
    assert offenders == []


def test_pickled_shard_members_are_never_unpickled(tmp_path):
    sentinel = tmp_path / "unpickled"
    evil = pickle.dumps(_Payload(sentinel))
    pickle.loads(evil)  # the payload works ...
    assert sentinel.exists()
    sentinel.unlink()  # ... so its absence below means nothing unpickled it
    rng = random.Random(0)
    shard = tmp_path / "set" / "00000.tar"
    samples = [(f"s{i}", {"jpg": jpeg(rng), "txt": b"a red cup on a table"}) for i in range(4)]
    samples[1][1].update({"pyd": evil, "pickle": evil, "pth": evil})
    write_shard(str(shard), samples)
    assert [m["pyd"] for _, m in read_shard(str(shard)) if "pyd" in m] == [evil]  # bytes, as written
    for command in (["validate"], ["inspect"], ["show", "--json"]):  # the shard tools read it as well
        if command[0] in COMMANDS:
            sgv_main([*command, str(shard), *(["s1"] if command[0] == "show" else [])])
    pytest.importorskip("torch")
    from sgverbalise.training.data import DataConfig, build_loader, load_tokenizer, train_tokenizer

    train_tokenizer(["a red cup on a table"] * 4, tmp_path / "tok", vocab_size=60, min_frequency=1)
    cfg = DataConfig(sources={"caption": [str(shard.parent)]}, ratios={"caption": 1}, batch_sizes={"caption": 2},
                     image_size=16, num_workers=0, shuffle_buffer=0, resampled=False, keep_keys=True)
    keys = [k for b in build_loader(cfg, load_tokenizer(tmp_path / "tok")) for k in b["keys"]]
    assert sorted(keys) == ["s0", "s1", "s2", "s3"]
    assert not sentinel.exists()


def _tar_with(path: Path, members: list[tarfile.TarInfo]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info in members:
            data = b'{"x": 1}' if info.isreg() else None
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_tar_member_names_are_never_used_as_paths(tmp_path):
    outside = tmp_path / "outside.json"
    names = ["../../escaped.json", f"/{outside.relative_to('/')}".replace(".json", "-abs.json"),
             "a/../../../up.json", "ok.json"]
    shard = tmp_path / "set" / "00000.tar"
    _tar_with(shard, [tarfile.TarInfo(n) for n in names])
    before = _files(tmp_path)
    keys = [key for key, _ in read_shard(str(shard))]
    assert keys == ["../../escaped", str(outside).removesuffix(".json") + "-abs", "a/../../../up", "ok"]
    sgv_main(["validate", str(shard.parent)])
    assert _files(tmp_path) == before and not Path(str(outside).replace(".json", "-abs.json")).exists()
    # links are refused, not followed
    link = tarfile.TarInfo("s.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("h.json")
    hard.type, hard.linkname = tarfile.LNKTYPE, "ok.json"
    for info in (link, hard):
        bad = tmp_path / "links" / f"{info.name}.tar"
        _tar_with(bad, [tarfile.TarInfo("ok.json"), info])
        with pytest.raises(ShardError, match="not a regular file"):
            list(read_shard(str(bad)))
        assert sgv_main(["validate", str(bad)]) == 1


def test_pillow_decompression_bomb_guard_stays_on():
    """Importing every module of the data paths leaves Pillow's guard on; the image stage rejects a bomb."""
    code = (
        "import importlib, pkgutil, warnings\n"
        "from PIL import Image\n"
        "for pkg in ('sgverbalise', 'sgverbalise.pipelines', 'sgverbalise.training.data'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "ignored = [f for f in warnings.filters if f[2] is Image.DecompressionBombWarning and f[0] == 'ignore']\n"
        "print(Image.MAX_IMAGE_PIXELS, len(ignored))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    pixels, ignored = done.stdout.split()
    assert pixels != "None" and int(pixels) <= 89_478_485 and ignored == "0"
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb_jpeg()))


@pytest.mark.slow
def test_credentials_and_signed_urls_never_reach_logs_or_outputs(s3_server, tmp_path):  # noqa: F811
    import boto3

    rng = random.Random(1)
    prefix = s3_server.prefix("secret").removeprefix(f"s3://{s3_server.bucket}/")
    graphs = {str(i): {"width": 64, "height": 48, "objects": {
        f"{i}1": {"name": "cup", "x": 1, "y": 1, "w": 10, "h": 10, "relations": [{"name": "on", "object": f"{i}2"}]},
        f"{i}2": {"name": "table", "x": 20, "y": 20, "w": 30, "h": 20}}} for i in range(1, 5)}
    s3_server.fs.pipe_file(f"{s3_server.bucket}/{prefix}/gqa.json", json.dumps(graphs).encode())
    for i in range(1, 4):  # image 4 is missing: its reject names where it was looked for
        s3_server.fs.pipe_file(f"{s3_server.bucket}/{prefix}/images/{i}.jpg", jpeg(rng))
    signed = boto3.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": s3_server.bucket, "Key": f"{prefix}/gqa.json"}, ExpiresIn=3600)
    password = "sgv-pass-w0rd"
    host = s3_server.endpoint.removeprefix("http://")
    images = f"http://sgvuser:{password}@{host}/{s3_server.bucket}/{prefix}/images"
    signature = next(p.split("=", 1)[1] for p in signed.split("?", 1)[1].split("&") if "ignature=" in p)
    secrets = [signature, password, ENV["AWS_SECRET_ACCESS_KEY"]]

    out = tmp_path / "out"
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO); "
            "from sgverbalise.pipelines.build_shards import run; run(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, "--gqa", signed, "--gqa-images", images, "--out", str(out)],
                          cwd=REPO, capture_output=True)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log.decode(errors="replace")[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    check_output(out, manifest)
    assert manifest["totals"]["samples"] == 3 and manifest["rejects"] == {"image/image_missing": 1}
    assert b"build-shards done" in log  # the log was captured
    leaks = {str(p.relative_to(out)): s for p in out.rglob("*") if p.is_file() for s in secrets
             if s.encode() in p.read_bytes()}
    leaks.update(("log", s) for s in secrets if s.encode() in log)
    assert leaks == {}
    assert manifest["inputs"][0]["url"] == signed.split("?", 1)[0]
