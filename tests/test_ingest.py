"""``sgv ingest`` and ``sgv build-shards --records`` on real Beam runs: Parquet records that rebuild the same
shards as the JSON inputs, deterministic files, carried read rejects and counts, integrity checks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from badinputs import write_bad_corpus
from helpers import check_output, files_sha

from sgverbalise.errors import InputError
from sgverbalise.pipelines.build_shards import run as build_shards
from sgverbalise.pipelines.ingest import run as ingest
from sgverbalise.pipelines.ingested import IncompleteIngestError, read_records
from sgverbalise.schemas.records import SCENE_GRAPH_SCHEMA
from sgverbalise.synth import synthesize

pytestmark = pytest.mark.slow


def _outputs(out: Path) -> dict[str, str]:
    sha = files_sha(out)
    sha.pop("manifest.json")  # its inputs and config name the JSON files or the records
    return sha


def test_shards_from_records_are_the_shards_from_json(tmp_path):
    # the bad corpus has read rejects of every kind (cut files, malformed entries), images that fail, and good
    # graphs: every one of them must come out the same through the Parquet records (ingest's files are the units
    # of the same plan when --records-per-file is the job's --images-per-unit)
    corpus = write_bad_corpus(str(tmp_path / "corpus"), 4)
    args = corpus.args(str(tmp_path / "direct")) + ["--samples-per-shard", "4", "--val-fraction", "0.3",
                                                    "--images-per-unit", "5"]
    direct = build_shards(args)
    sources = ["--vg", corpus.vg, "--gqa", corpus.gqa[0], "--gqa", corpus.gqa[1]]
    records = ingest([*sources, "--out", str(tmp_path / "records"), "--records-per-file", "5",
                      "--allow-partial-inputs"])
    assert records["stats"]["images_read"] == direct["totals"]["images_read"]
    assert sum(f["rows"] for f in records["files"]) == records["stats"]["images_read"] - \
        records["stats"]["images_rejected"]
    assert records["rejects"] and all(f["rows"] <= 5 for f in records["files"])
    rest = [a for a in args if a not in sources[1::2] and a not in ("--vg", "--gqa", "--allow-partial-inputs")]
    assert len({s["name"] for s in direct["splits"]["train"]["shards"]}) > 3  # several units, several shards
    rest[rest.index("--out") + 1] = str(tmp_path / "from_records")
    rebuilt = build_shards(["--records", str(tmp_path / "records"), *rest])
    check_output(tmp_path / "from_records", rebuilt)
    assert _outputs(tmp_path / "from_records") == _outputs(tmp_path / "direct")
    assert rebuilt["totals"] == direct["totals"] and rebuilt["rejects"] == direct["rejects"]
    assert [i["role"] for i in rebuilt["inputs"]] == ["records"]
    # the cut file ingest accepted is carried into the shard set's manifest
    assert rebuilt["cuts"] == direct["cuts"] == records["cuts"] and len(direct["cuts"]) == 1


def test_ingest_is_deterministic_and_its_files_are_the_canonical_schema(tmp_path):
    synthesize(str(tmp_path / "c"), 50, seed=2, layout="split")
    argv = ["--vg", str(tmp_path / "c" / "vg"), "--gqa", str(tmp_path / "c" / "gqa" / "train_sceneGraphs.json"),
            "--records-per-file", "16"]
    one = ingest([*argv, "--out", str(tmp_path / "one"), "--direct_num_workers=1"])
    two = ingest([*argv, "--out", str(tmp_path / "two"), "--direct_num_workers=2"])
    assert files_sha(tmp_path / "one") == files_sha(tmp_path / "two")
    from sgverbalise.readers import iter_gqa, iter_vg

    in_order = {source: [f"{source}-{r['image_id']}" for r, _ in reader if r] for source, reader in (
        ("vg", iter_vg(str(tmp_path / "c" / "vg"))), ("gqa", iter_gqa(argv[3])))}
    units = sum(-(-len(keys) // 16) for keys in in_order.values())
    assert one["files"] == two["files"] and len(one["files"]) == units
    keys = []
    for f in one["files"]:
        path = tmp_path / "one" / f["name"]
        assert pq.read_schema(path).remove_metadata() == SCENE_GRAPH_SCHEMA.remove_metadata()
        rows = read_records(path.read_bytes())
        assert len(rows) == f["rows"]
        keys += [f"{r['source']}-{r['image_id']}" for r in rows]
    assert keys == in_order["vg"] + in_order["gqa"] and len(set(keys)) == 50  # units in order, records in input order
    # a rerun into the same folder with bigger files leaves only its own files (one unit per input)
    again = ingest([*argv[:-1], "50", "--out", str(tmp_path / "one")])
    assert sorted(p.name for p in (tmp_path / "one").glob("*.parquet")) == [f["name"] for f in again["files"]] \
        == ["records-00000.parquet", "records-00001.parquet"]


def test_a_changed_records_file_fails_the_shard_job(tmp_path):
    synthesize(str(tmp_path / "c"), 12, seed=1, gqa_fraction=0.0)
    manifest = ingest(["--vg", str(tmp_path / "c" / "vg"), "--out", str(tmp_path / "rec"), "--records-per-file", "6"])
    victim = tmp_path / "rec" / manifest["files"][1]["name"]
    other = tmp_path / "rec" / manifest["files"][0]["name"]
    victim.write_bytes(other.read_bytes())  # a valid Parquet file, but not the one ingest wrote
    with pytest.raises(Exception, match="sha256 differs") as err:
        build_shards(["--records", str(tmp_path / "rec"), "--out", str(tmp_path / "out")])
    assert "IncompleteIngestError" in str(err.value) or isinstance(err.value, IncompleteIngestError)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_records_need_a_finished_ingest_and_replace_the_json_inputs(tmp_path):
    with pytest.raises(InputError, match="nothing: no such file or folder"):  # pre-flight, before Beam
        build_shards(["--records", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    (tmp_path / "unfinished").mkdir()  # an ingest run that never wrote its ingest.json
    with pytest.raises(InputError, match="run sgv ingest first"):
        build_shards(["--records", str(tmp_path / "unfinished"), "--out", str(tmp_path / "out")])
    with pytest.raises(InputError, match="replaces --vg"):
        build_shards(["--records", str(tmp_path / "nothing"), "--vg", str(tmp_path), "--out", str(tmp_path / "o")])
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "ingest.json").write_text(json.dumps({"kind": "manifest"}))
    with pytest.raises(InputError, match="not a records manifest"):
        build_shards(["--records", str(tmp_path / "fake"), "--out", str(tmp_path / "out")])
