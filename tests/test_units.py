"""The planner of the shard job's units: element boundaries of giant JSON files found without parsing them
(checked against orjson on the whole file), VG image ids, the join plan of VG's files, and reading a unit."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from badinputs import write_bad_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgverbalise.errors import InputFileError
from sgverbalise.readers import gqa, iter_gqa, iter_vg, vg
from sgverbalise.readers import units as plan_files  # the bytes the job's workers hand each other
from sgverbalise.readers.ranges import PREMATURE_EOF, parse_element, read_range, scan
from sgverbalise.readers.units import BY_ID, InputFiles, plan, read_predicates, read_unit, scan_file
from sgverbalise.readers.vg import resolve_vg_files

# strings that trip a framing scan: brackets, commas, quotes, backslashes (escaped or not), unicode, keys
TRICKY = ["]", "[", "{", "}", ",", '"', "\\", '\\"', '"]', "\\\\", '\\\\"', "é", "\u2028", "💡", "\x00", ": ,",
          '"image_id": 5', "id", "image_id"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(TRICKY),
                    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(TRICKY), st.text(max_size=4)), inner,
                                                 max_size=4)), max_leaves=20)
entries = st.one_of(values, st.fixed_dictionaries(
    {"image_id": st.one_of(st.integers(0, 10**12), st.text(max_size=6), st.none(), values)},
    optional={"id": st.one_of(st.integers(0, 99), st.text(max_size=4)), "objects": values, "x": values}))


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def elements(s, opener=b"["):
    return [parse_element(read_range(s.url, int(a), int(b)), opener, s.url, k, int(a))
            for k, (a, b) in enumerate(zip(s.starts, s.ends, strict=True))]


def expected_id(entry) -> str | None:
    from sgverbalise.readers.vg import image_key

    return image_key(entry)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(entries, max_size=12), block=st.sampled_from([1, 3, 16, 1 << 16]),
       indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_list_boundaries_and_ids_agree_with_orjson_on_the_whole(tmp_path, items, block, indent, ascii_only):
    data = json.dumps(items, indent=indent, ensure_ascii=ascii_only).encode()
    url = write(tmp_path, "a.json", data)
    s = scan(url, ids=True, block=block)
    assert s.cut is None and len(s) == len(items)
    assert elements(s) == orjson.loads(data)
    assert s.ids == [expected_id(e) for e in orjson.loads(data)]
    assert_same_scan(plan_files.scan_from_bytes(plan_files.scan_to_bytes(s)), s)  # as the job's workers hand it on


def assert_same_scan(got, want):
    assert (got.url, got.size, got.ids, got.cut) == (want.url, want.size, want.ids, want.cut)
    assert got.starts.tolist() == want.starts.tolist() and got.ends.tolist() == want.ends.tolist()


@pytest.mark.parametrize("number", [2**64 + 1, -(10**30), 10**18, 1234567890123456789, 2**63 - 1])
def test_integers_of_19_digits_and_more_are_read_exactly(tmp_path, number):
    # orjson would read an integer beyond 64 bits as a float: such elements and ids go to the standard library
    data = json.dumps([{"image_id": number, "x": [number, 1.5, f"n{number}"]}, {"id": 7}]).encode()
    s = scan(write(tmp_path, "a.json", data), ids=True)
    assert elements(s) == json.loads(data) and s.ids == [str(number), "7"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.dictionaries(st.one_of(st.sampled_from(TRICKY), st.text(max_size=6)), values, max_size=10),
       block=st.sampled_from([1, 5, 1 << 16]))
def test_object_members_agree_with_orjson_on_the_whole(tmp_path, members, block):
    data = json.dumps(members, ensure_ascii=False).encode()
    url = write(tmp_path, "o.json", data)
    s = scan(url, b"{", block=block)
    assert dict(elements(s, b"{")) == orjson.loads(data) and len(s) == len(members)
    assert_same_scan(plan_files.scan_from_bytes(plan_files.scan_to_bytes(s)), s)


def test_ranges_cut_nothing_and_cover_the_file(tmp_path):
    items = [{"image_id": i, "s": "a],[{" * (i % 3), "n": [[i], {"k": '"\\'}]} for i in range(500)]
    data = b"\xef\xbb\xbf \n" + json.dumps(items, indent=2).encode() + b"\n "
    url = write(tmp_path, "a.json", data)
    s = scan(url, ids=True, block=1000)  # many blocks, elements across their edges
    assert elements(s) == items and s.ids == [str(i) for i in range(500)]
    # consecutive: the bytes between elements are exactly one comma (and whitespace)
    gaps = [data[int(e):int(b)] for e, b in zip(s.ends[:-1], s.starts[1:], strict=True)]
    assert all(g == b"," for g in gaps)
    assert data[:int(s.starts[0])].strip(b"\xef\xbb\xbf \n") == b"[" and data[int(s.ends[-1]):].strip() == b"]"


@pytest.mark.parametrize("text, count", [(b"[]", 0), (b" [ ] ", 0), (b"[1]", 1), (b"{}", None), (b'[[],{},""]', 3)])
def test_empty_and_small(tmp_path, text, count):
    url = write(tmp_path, "a.json", text)
    if count is None:
        with pytest.raises(InputFileError, match="not a list"):
            scan(url)
    else:
        assert len(scan(url)) == count


@pytest.mark.parametrize("text, message", [(b"", "empty file"), (b'{"a": 1}', "not a list"),
                                           (b"[1, 2]]", "trailing garbage"), (b"[1, 2] x", "trailing garbage")])
def test_broken_framing_raises(tmp_path, text, message):
    with pytest.raises(InputFileError, match=message):
        scan(write(tmp_path, "a.json", text))


def test_a_cut_file_keeps_the_whole_elements_before_the_cut(tmp_path):
    items = [{"image_id": i, "v": "x" * 30} for i in range(50)]
    data = json.dumps(items).encode()
    for cut_at in (len(data) // 2, data.index(b"}", 200) + 1, len(data) - 1):
        url = write(tmp_path, "a.json", data[:cut_at])
        s = scan(url, ids=True, block=64)
        complete = sum(1 for k in range(len(items)) if len(json.dumps(items[:k + 1])) - 1 <= cut_at)
        assert len(s) == complete and elements(s) == items[:complete]
        assert (s.cut.elements, s.cut.offset, s.cut.detail) == (complete, cut_at, PREMATURE_EOF)
        with pytest.raises(InputFileError):
            scan(url, allow_cut=False)


def test_an_element_that_is_not_json_names_its_file_element_and_offset(tmp_path):
    url = write(tmp_path, "a.json", b'[{"image_id": 1}, {"image_id": 2 "x": 1}, {"image_id": 3}]')
    s = scan(url, ids=True)
    assert len(s) == 3 and s.ids == ["1", "2", "3"]
    with pytest.raises(InputFileError, match=r"a\.json: invalid JSON.*after 1 complete entries \(parser at byte 17"):
        elements(s)


def test_integers_beyond_64_bits_and_lone_surrogates_parse_as_the_streaming_readers_do(tmp_path):
    url = write(tmp_path, "a.json", b'[{"image_id": 123456789012345678901234567890}, {"s": "\\ud800"}]')
    values = elements(scan(url, ids=True))
    assert values == [{"image_id": 123456789012345678901234567890}, {"s": "\ud800"}]


def vg_split(tmp_path: Path, images: list[int], order: dict[str, list[int]] | None = None) -> Path:
    """A tiny VG folder in the split layout; ``order`` reorders a file's images."""
    folder = tmp_path / "vg"
    folder.mkdir(parents=True, exist_ok=True)
    order = order or {}
    files = {
        "objects.json": lambda i: {"image_id": i, "objects": [
            {"object_id": 10 * i, "names": ["man"], "x": 1, "y": 1, "w": 5, "h": 5},
            {"object_id": 10 * i + 1, "names": ["horse"], "x": 2, "y": 3, "w": 5, "h": 5}]},
        "relationships.json": lambda i: {"image_id": i, "relationships": [
            {"relationship_id": i, "predicate": "rides" if i % 2 else "next to",
             "subject_id": 10 * i, "object_id": 10 * i + 1}]},
        "image_data.json": lambda i: {"image_id": i, "width": 50, "height": 40, "url": f"http://x/VG_100K/{i}.jpg"},
    }
    for name, make in files.items():
        ids = order.get(name, images)
        (folder / name).write_text(json.dumps([make(i) for i in ids]))
    return folder


def plan_vg(folder: Path, unit_size: int = 3, limit=None):
    inp = InputFiles("vg", tuple(resolve_vg_files(str(folder)).items()))
    scans = {("vg", url): scan_file(inp, role, url) for role, url in inp.files}
    return plan([inp], scans, unit_size, limit, allow_partial=False)


def unit_items(result):
    items = [item for unit in result.units for item in read_unit(unit)]
    # a unit handed on as bytes (the job's staging file) reads the same
    handed_on = [plan_files.unit_from_bytes(plan_files.unit_to_bytes(unit)) for unit in result.units]
    assert [item for unit in handed_on for item in read_unit(unit)] == items
    return items


def test_aligned_units_read_what_the_streaming_join_reads(tmp_path):
    folder = vg_split(tmp_path, list(range(1, 11)))
    result = plan_vg(folder)
    assert [len(u) for u in result.units] == [3, 3, 3, 1] and [u.first for u in result.units] == [0, 3, 6, 9]
    assert result.joins == [{"source": "vg", "join": "aligned", "images": 10}]
    assert unit_items(result) == list(iter_vg(str(folder)))
    assert [len(u) for u in plan_vg(folder, limit=4).units] == [3, 1]


def test_misaligned_files_fall_back_to_the_join_by_id_with_the_same_records(tmp_path):
    images = list(range(1, 11))
    aligned = unit_items(plan_vg(vg_split(tmp_path / "a", images)))
    order = {"relationships.json": images[::-1], "image_data.json": images[1::2] + images[::2]}
    result = plan_vg(vg_split(tmp_path / "b", images, order))
    assert [j["join"] for j in result.joins] == [BY_ID] and "do not line up" in result.joins[0]["detail"]
    assert unit_items(result) == aligned
    # an image missing from one file, another in one file only: one group each, as the streaming join has them
    order = {"relationships.json": images[:-1] + [99]}
    result = plan_vg(vg_split(tmp_path / "c", images, order))
    got = {r["image_id"]: r for r, _ in unit_items(result) if r}
    want = {r["image_id"]: r for r, _ in iter_vg(str(tmp_path / "c" / "vg")) if r}
    assert got == want and set(got) == {str(i) for i in [*images, 99]}


def test_gqa_units_read_what_the_streaming_reader_reads(tmp_path, gqa_sample):
    url = str(gqa_sample / "train_sceneGraphs.json")
    inp = InputFiles("gqa", (("gqa", url),))
    result = plan([inp], {("gqa", url): scan_file(inp, "gqa", url)}, 7, None, allow_partial=False)
    assert unit_items(result) == list(iter_gqa(url))
    assert sum(len(u) for u in result.units) == len(orjson.loads(Path(url).read_bytes()))


# -- the vocabulary's pre-pass: the predicates of the records, without assembling them ----------

IDS = st.one_of(st.integers(-3, 99), st.sampled_from(["7", "", " ", "\ud800", "x"]), values)
PREDICATE = st.one_of(st.sampled_from(["on", " On ", "", "\ud800", "next to"]), values)


def maybe(strategy):
    """A field's plausible value or anything at all (to trip the checks)."""
    return st.one_of(strategy, values)


vg_ends = maybe(st.fixed_dictionaries({}, optional={"object_id": IDS, "id": IDS, "name": st.just("cup")}))
vg_relations = maybe(st.fixed_dictionaries({}, optional={
    "relationship_id": IDS, "id": IDS, "predicate": PREDICATE, "subject_id": IDS, "object_id": IDS,
    "subject": vg_ends, "object": vg_ends}))
vg_entries = st.fixed_dictionaries({}, optional={  # an entry with an image id is a JSON object
    "image_id": IDS, "width": maybe(st.integers(0, 2**40)), "height": st.integers(0, 99),
    "url": maybe(st.just("http://x/VG_100K/1.jpg")), "image_url": values, "coco_id": maybe(st.integers(0, 2**70)),
    "flickr_id": values, "objects": maybe(st.lists(vg_ends, max_size=3)),
    "relationships": maybe(st.lists(vg_relations, max_size=4))})
gqa_relations = maybe(st.fixed_dictionaries({}, optional={"name": PREDICATE, "object": IDS}))
gqa_objects = maybe(st.fixed_dictionaries({}, optional={
    "name": st.just("cup"), "x": st.integers(0, 9), "relations": maybe(st.lists(gqa_relations, max_size=3))}))
gqa_entries = maybe(st.fixed_dictionaries({}, optional={
    "width": maybe(st.integers(0, 99)), "location": maybe(st.just("indoors")),
    "objects": maybe(st.dictionaries(st.sampled_from(["1", "2", "", " ", "\ud800"]), gqa_objects, max_size=3))}))


def record_predicates(item) -> list[str] | None:
    """The raw predicates of a reader item's record (None: no record)."""
    record, _ = item
    return None if record is None else [r["predicate_raw"] for r in record["relations"]]


@settings(max_examples=300, deadline=None)
@given(image_id=st.sampled_from(["1", "abc"]), group=st.dictionaries(st.sampled_from(vg.PREDICATE_ROLES),
                                                                     vg_entries, min_size=1))
def test_vg_relation_predicates_are_those_of_the_assembled_record(image_id, group):
    assert vg.relation_predicates(image_id, group) == record_predicates(vg.assemble_vg(image_id, group))
    assert vg.relation_predicates(None, group) is None


@settings(max_examples=300, deadline=None)
@given(key=IDS, entry=gqa_entries)
def test_gqa_relation_predicates_are_those_of_the_assembled_record(key, entry):
    assert gqa.relation_predicates(key, entry) == record_predicates(gqa.assemble_gqa(key, entry))


def test_read_predicates_of_broken_inputs_are_those_of_read_unit(tmp_path):
    # every kind of bad element, GQA's cut file and an element that is not JSON (with on_error, as the job's
    # --allow-partial-inputs): the pre-pass counts what the units' records hold, nothing of what they reject
    corpus = write_bad_corpus(str(tmp_path / "bad"), 5)
    broken = Path(corpus.vg) / "scene_graphs.json"
    data = broken.read_bytes()
    broken.write_bytes(data.replace(b'"relationships"', b'"relationships" :: ', 1))
    inputs = [InputFiles("vg", tuple(resolve_vg_files(corpus.vg).items())),
              *(InputFiles("gqa", (("gqa", url),)) for url in corpus.gqa)]
    scans = {(inp.source, url): scan_file(inp, role, url) for inp in inputs for role, url in inp.files}
    units = plan(inputs, scans, 4, None, allow_partial=True).units
    errors = []
    for unit in units:
        found = list(read_predicates(unit, errors.append))
        assert found == [None if item is None else record_predicates(item)
                         for item in read_unit(unit, on_error=lambda _: None)]
    assert len(errors) == 1 and "invalid JSON" in str(errors[0])
    assert sum(p is None for u in units for p in read_predicates(u, lambda _: None)) > 5
    with pytest.raises(InputFileError):
        [p for u in units for p in read_predicates(u)]


# -- the plan as the job hands it on: names of staging files, not the units ------------------------------------


def test_the_plan_crosses_the_runner_as_small_unit_refs_that_load_the_planned_units(tmp_path, vg_sample, gqa_sample):
    import pickle

    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from sgverbalise.pipelines.options import BuildConfig
    from sgverbalise.pipelines.units import PlanUnits, UnitRef, job_inputs

    cfg = BuildConfig(out=str(tmp_path / "out"), vg=str(vg_sample),
                      gqa=(str(gqa_sample / "train_sceneGraphs.json"),), images_per_unit=60)
    inputs = job_inputs(cfg)
    scans = {(inp.source, url): scan_file(inp, role, url) for inp in inputs for role, url in inp.files}
    want = plan(inputs, scans, 60, None, allow_partial=False).units

    def check(refs):
        assert all(isinstance(r, UnitRef) and len(pickle.dumps(r)) < 1000 for r in refs)  # names, not ranges
        got = sorted((r.load() for r in refs), key=lambda u: u.index)
        assert [list(read_unit(u)) for u in got] == [list(read_unit(u)) for u in want]
        assert [(u.index, u.source, u.first, u.ids) for u in got] == [(u.index, u.source, u.first, u.ids)
                                                                       for u in want]

    with TestPipeline() as p:
        units = (p | PlanUnits(cfg))[0]
        assert_that(units | beam.combiners.ToList(), lambda lists: check(lists[0]))
    assert len(want) == 4  # 2 units of VG's 100 images, 2 of GQA's
