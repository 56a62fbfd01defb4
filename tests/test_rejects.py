"""Rejects written per unit and merged at the end: the merged files are every reject once, in an order that
depends on the rejects only (the order of the job before units, with ties settled by the line), whatever files
they came through; a merge that does not find what the units reported fails the run."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgverbalise.pipelines import publish
from sgverbalise.pipelines.publish import IncompleteRunError, MergeRejectsFn, Staging, UnitRejects, write_groups
from sgverbalise.rejects import group, merge_lines, reject, reject_line, sorted_lines
from sgverbalise.schemas import REJECT_REASONS
from sgverbalise.schemas.layout import rejects_name

REASONS = sorted(REJECT_REASONS)[:4]
rejects_st = st.lists(st.builds(
    lambda source, image_id, reason, detail, kind, extra: dict(reject(source, image_id, reason, detail, kind),
                                                               **({"relations": extra} if extra else {})),
    st.sampled_from(["vg", "gqa"]), st.one_of(st.none(), st.sampled_from(["1", "10", "2", "é"])),
    st.sampled_from(REASONS), st.sampled_from(["", "a", "b \u2028 c", "ü"]),
    st.sampled_from(["image", "relation"]), st.integers(0, 2)), max_size=40)


def old_order(r: dict) -> tuple:
    """How the job before units sorted each reject file (ties in the order the runner delivered them)."""
    return (r["source"], r["image_id"] or "", r["kind"], r["reason"], r["detail"])


@given(rejects_st, st.lists(st.integers(0, 5), min_size=40, max_size=40))
def test_merged_runs_are_the_sorted_rejects_whatever_the_runs(rejects, run_of):
    runs: list[list[dict]] = [[] for _ in range(6)]
    for r, k in zip(rejects, run_of, strict=False):
        runs[k].append(r)
    merged = list(merge_lines([sorted_lines(run) for run in runs]))
    assert [line for _, line in merged] == sorted_lines(rejects)
    assert [g for g, _ in merged] == [group(json.loads(line)) for _, line in merged]
    # within a group: the order of the job before units, ties settled by the line
    for g in {group(r) for r in rejects}:
        mine = [r for r in rejects if group(r) == g]
        assert [line for h, line in merged if h == g] == \
            [reject_line(r) for r in sorted(sorted(mine, key=reject_line), key=old_order)]


def unit_files(out: str, rejects: list[dict], units: int) -> list[dict]:
    """The rejects dealt to ``units`` units, each unit's written to its staging file as the units do."""
    infos = []
    for u in range(units):
        sink = UnitRejects(out, u)
        for r in rejects[u::units]:
            sink.add(r)
        if (info := sink.close()) is not None:
            infos.append(info)
    return infos


@settings(max_examples=25, deadline=None)
@given(rejects_st, st.integers(1, 7), st.integers(2, 3))
def test_merge_writes_each_group_sorted_in_rounds_or_not(tmp_path_factory, rejects, units, most):
    out = str(tmp_path_factory.mktemp("out"))
    loose, dealt = rejects[:3], rejects[3:]
    files = unit_files(out, dealt, units)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(publish, "MAX_RUNS", most)  # rounds when more files than this
        found = list(MergeRejectsFn(out).process(None, loose, files))
    expected = Counter(group(r) for r in rejects)
    assert [(g, n) for g, n, _ in found] == sorted(expected.items())
    staging = Staging(out)
    for g, _, name in found:
        assert name == rejects_name(g)
        data = open(staging.url(name), "rb").read()
        assert data == b"".join(line + b"\n" for line in sorted_lines(r for r in rejects if group(r) == g))


def test_a_unit_without_rejects_writes_no_file(tmp_path):
    assert UnitRejects(str(tmp_path), 3).close() is None
    assert not list(tmp_path.rglob("*"))


def test_a_merge_that_does_not_find_what_the_units_reported_fails(tmp_path):
    out = str(tmp_path)
    rejects = [reject("vg", str(i), "malformed_record", kind="relation") for i in range(5)]
    files = unit_files(out, rejects, 2)
    files[0]["counts"] = {g: n + 1 for g, n in files[0]["counts"].items()}
    with pytest.raises(IncompleteRunError, match="elements were lost"):
        list(MergeRejectsFn(out).process(None, [], files))
    with pytest.raises(IncompleteRunError, match="reported twice"):
        list(MergeRejectsFn(out).process(None, [], [files[1], files[1]]))


def test_group_lines_out_of_order_are_refused(tmp_path):
    lines = [("a/x", b"1"), ("b/y", b"2"), ("a/x", b"3")]
    with pytest.raises(ValueError, match="out of order"):
        write_groups(Staging(str(tmp_path)), lines)
