"""Units of work over the JSON inputs: the plan (which images each unit reads, where their bytes are) and the
reading of one unit into reader items, without parsing anything outside it.

An input is one GQA file, or VG's files (split layout: objects, relationships, attributes, image data, regions;
or scene_graphs.json with image data and regions). Each file is scanned for the boundaries of its top-level
elements (``ranges.scan``); VG's files also give each element's image id. An input's images are its groups:

- GQA: one per member of the top-level object, in file order;
- VG, aligned files (every file has the same image ids in the same order, as the official release): group ``i``
  is element ``i`` of each file;
- VG otherwise (a filtered or reordered copy): the join by image id of ``join_by_image`` (a second entry of an
  image in one file starts a new group; an entry without a usable id is a group of its own), the groups in order
  of first appearance, reading the files in role order. The output is the same as for aligned files whenever the
  first file is in the aligned order.

The groups of each input, ``--limit`` of them at most, are cut into units of ``unit_size`` consecutive groups;
units are numbered over the inputs in order (VG, then each GQA file). A unit holds, per file, the byte range of
each group's element (-1 where the group has none): reading it takes one range read per file for aligned files.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson

from sgverbalise.errors import InputFileError
from sgverbalise.readers import gqa, vg
from sgverbalise.readers.ranges import Scan, parse_element, read_range, scan
from sgverbalise.storage import redact

log = logging.getLogger(__name__)

ALIGNED, BY_ID = "aligned", "by_id"
MAX_GAP = 1 << 20
Item = tuple[dict | None, list[dict]]  # unread bytes between two wanted ranges of a file that one read still spans
T = TypeVar("T")


@dataclass(frozen=True)
class InputFiles:
    """One input: its source and its files by role (``gqa`` for a GQA file)."""

    source: str
    files: tuple[tuple[str, str], ...]  # (role, url), in role order

    @property
    def opener(self) -> bytes:
        return b"{" if self.source == "gqa" else b"["


@dataclass
class Unit:
    """Work for one worker: ``len(ids)`` consecutive groups of one input, starting at its group ``first``."""

    index: int
    source: str
    files: dict[str, str]
    first: int
    ids: list[str | None]
    spans: dict[str, np.ndarray]  # role -> (groups, 2) int64 start/end, -1 where the group has no entry

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Plan:
    """The units of all inputs, the cuts of files that broke off, how each VG input was joined."""

    units: list[Unit] = field(default_factory=list)
    cuts: list[tuple[str, InputFileError]] = field(default_factory=list)
    joins: list[dict] = field(default_factory=list)


def scan_file(inp: InputFiles, role: str, url: str) -> Scan:
    """The scan of one file of an input (image ids for VG's files)."""
    return scan(url, inp.opener, ids=inp.source == "vg")


def _aligned(scans: dict[str, Scan]) -> bool:
    first = next(iter(scans.values()))
    return all(len(s) == len(first) and s.ids == first.ids for s in scans.values()) and None not in first.ids


def _join_by_id(scans: dict[str, Scan]) -> tuple[list[str | None], dict[str, np.ndarray]]:
    """Groups of misaligned files: (image id, occurrence) in order of first appearance, files in role order."""
    order: dict[object, int] = {}
    ids: list[str | None] = []
    members: dict[str, list[tuple[int, int]]] = {role: [] for role in scans}
    for role, s in scans.items():
        seen: Counter[str] = Counter()
        for k, image_id in enumerate(s.ids):
            if image_id is None:
                key: object = ("none", role, k)
            else:
                key = (image_id, seen[image_id])
                seen[image_id] += 1
            if key not in order:
                order[key] = len(ids)
                ids.append(image_id)
            members[role].append((order[key], k))
    spans = {}
    for role, pairs in members.items():
        table = np.full((len(ids), 2), -1, dtype=np.int64)
        if pairs:
            groups, elements = np.asarray(pairs, dtype=np.int64).T
            table[groups, 0] = scans[role].starts[elements]
            table[groups, 1] = scans[role].ends[elements]
        spans[role] = table
    return ids, spans


def plan(inputs: list[InputFiles], scans: dict[tuple[str, str], Scan], unit_size: int, limit: int | None,
         allow_partial: bool) -> Plan:
    """The units of ``inputs`` from the scans of their files (keyed by (source, url)); a cut file raises its
    InputFileError unless ``allow_partial``."""
    result = Plan()
    for inp in inputs:
        mine = {role: scans[(inp.source, url)] for role, url in inp.files}
        for s in mine.values():
            if s.cut is not None:
                if not allow_partial:
                    raise s.cut
                log.warning("input cut, accepted (--allow-partial-inputs): %s", s.cut)
                result.cuts.append((inp.source, s.cut))
        if inp.source == "gqa":
            ((role, only),) = mine.items()
            ids: list[str | None] = [None] * len(only)
            spans = {role: np.stack([only.starts, only.ends], axis=1)}
        elif _aligned(mine):
            first = next(iter(mine.values()))
            ids = list(first.ids)
            spans = {role: np.stack([s.starts, s.ends], axis=1) for role, s in mine.items()}
            if len(mine) > 1:
                result.joins.append({"source": inp.source, "join": ALIGNED, "images": len(ids)})
        else:
            ids, spans = _join_by_id(mine)
            detail = (f"the files' image ids do not line up ({', '.join(f'{r}: {len(s)}' for r, s in mine.items())}"
                      " entries): joined by image id")
            log.warning("%s: %s", inp.source, detail)
            result.joins.append({"source": inp.source, "join": BY_ID, "images": len(ids), "detail": detail})
        if limit is not None:
            ids = ids[:limit]
        for first in range(0, len(ids), unit_size):
            last = min(first + unit_size, len(ids))
            result.units.append(Unit(len(result.units), inp.source, dict(inp.files), first, ids[first:last],
                                     {role: table[first:last] for role, table in spans.items()}))
    return result


def _entries(unit: Unit, role: str) -> list[tuple[int, bytes] | None]:
    """Each group's element of file ``role`` as (its byte offset, its bytes), or None; read in as few range
    reads as the layout allows (one for aligned files)."""
    table = unit.spans[role]
    url = unit.files[role]
    present = np.flatnonzero(table[:, 0] >= 0)
    out: list[tuple[int, bytes] | None] = [None] * len(table)
    order = present[np.argsort(table[present, 0], kind="stable")]
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and table[order[j], 0] - table[order[j - 1], 1] <= MAX_GAP \
                and table[order[j], 0] >= table[order[j - 1], 1]:
            j += 1
        start, end = int(table[order[i], 0]), int(max(table[order[k], 1] for k in range(i, j)))
        data = memoryview(read_range(url, start, end))
        for k in order[i:j].tolist():
            s, e = int(table[k, 0]), int(table[k, 1])
            out[k] = (s, data[s - start:e - start])
        i = j
    return out



def _each_group(unit: Unit, make: Callable[[str | None, dict[str, Any]], T],
                on_error: Callable[[InputFileError], T] | None, roles: Iterable[str] | None) -> Iterator[T]:
    """``make(image id, group)`` of each of a unit's groups that has an element of ``roles`` (all: None), in
    order; a group is role -> parsed element (GQA's: ``(key, value)``). An element that is not JSON raises
    InputFileError naming it, or with ``on_error`` gives what it returns."""
    opener = b"{" if unit.source == "gqa" else b"["
    wanted = unit.spans if roles is None else [role for role in unit.spans if role in roles]
    entries = {role: _entries(unit, role) for role in wanted}
    for k, image_id in enumerate(unit.ids):
        group = {}
        try:
            for role, found in entries.items():
                if found[k] is not None:
                    offset, data = found[k]
                    group[role] = parse_element(data, opener, unit.files[role], unit.first + k, offset)
        except InputFileError as exc:
            if on_error is None:
                raise
            yield on_error(exc)
            continue
        if group:
            yield make(image_id, group)


def read_unit(unit: Unit, on_error: Callable[[InputFileError], Item] | None = None) -> Iterator[Item]:
    """The reader items ``(record | None, rejects)`` of a unit's groups, in order (as ``iter_vg``/``iter_gqa``
    give them for the same images). An element that is not JSON raises InputFileError naming it, or with
    ``on_error`` becomes the item it returns."""
    if unit.source == "gqa":
        return _each_group(unit, lambda _, group: gqa.assemble_gqa(*group["gqa"]), on_error, None)
    return _each_group(unit, lambda image_id, group: vg.assemble_vg(image_id, group, unit.files), on_error, None)


def read_predicates(unit: Unit, on_error: Callable[[InputFileError], None] | None = None) \
        -> Iterator[list[str] | None]:
    """Per group of a unit, in order, the raw predicates of the relations of its record as ``read_unit`` gives
    it, or None when it has none (no record, or an element that is not JSON, with ``on_error``, which is
    called with its InputFileError): the vocabulary's counts without assembling the records. Reads only VG's
    files that decide them (``vg.PREDICATE_ROLES``)."""
    if unit.source == "gqa":
        return _each_group(unit, lambda _, group: gqa.relation_predicates(*group["gqa"]), on_error, None)
    return _each_group(unit, vg.relation_predicates, on_error, vg.PREDICATE_ROLES)


def describe(unit: Unit) -> str:
    return f"unit {unit.index} ({unit.source} images {unit.first}-{unit.first + len(unit) - 1} of " \
           f"{', '.join(redact(u) for u in unit.files.values())})"


# ---------------------------------------------------------------------------------------------------- plan files
# A job's workers hand scans and units to each other as files (NumPy's .npz, no pickles) so that only their names
# cross the runner: a scan of a 216k-image VG file is ~5 MB, a unit of 2,000 VG images ~180 kB (all of them, in
# the runner's buffers and a worker's copy, had added ~0.7 GB to the job's memory at 386k images).

def _json_array(value) -> np.ndarray:
    return np.frombuffer(orjson.dumps(value), dtype=np.uint8)


def _from_json_array(array: np.ndarray):
    return orjson.loads(array.tobytes())


def _npz(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, meta=_json_array(meta), **arrays)
    return out.getvalue()


def _load(data: bytes) -> tuple[dict, Any]:
    arrays = np.load(io.BytesIO(data), allow_pickle=False)
    return _from_json_array(arrays["meta"]), arrays


def scan_to_bytes(scan: Scan) -> bytes:
    """A scan's boundaries and ids as bytes (its cut, an exception, is not in them)."""
    ids = {} if scan.ids is None else {"ids": _json_array(scan.ids)}
    return _npz({"url": scan.url, "size": scan.size}, {"starts": scan.starts, "ends": scan.ends, **ids})


def scan_from_bytes(data: bytes, cut: InputFileError | None = None) -> Scan:
    meta, arrays = _load(data)
    ids = _from_json_array(arrays["ids"]) if "ids" in arrays else None
    return Scan(meta["url"], meta["size"], arrays["starts"], arrays["ends"], ids, cut)


def unit_to_bytes(unit: Unit) -> bytes:
    """A unit as bytes: ``unit_from_bytes`` gives it back equal."""
    roles = list(unit.spans)
    return _npz({"index": unit.index, "source": unit.source, "files": unit.files, "first": unit.first,
                 "roles": roles},
                {"ids": _json_array(unit.ids), **{f"spans_{k}": unit.spans[role] for k, role in enumerate(roles)}})


def unit_from_bytes(data: bytes) -> Unit:
    meta, arrays = _load(data)
    spans = {role: arrays[f"spans_{k}"] for k, role in enumerate(meta["roles"])}
    return Unit(meta["index"], meta["source"], meta["files"], meta["first"], _from_json_array(arrays["ids"]), spans)
