"""Element boundaries of one giant JSON file, found without parsing it, and the byte ranges of its elements.

``scan(url, opener)`` reads the file once, in blocks, and finds where each top-level element starts and ends: the
items of a top-level list (``opener`` "[", VG's files) or the ``"key": value`` members of a top-level object ("{",
GQA's files). Each block is scanned with numpy: quotes not escaped by an odd run of backslashes open and close
strings (parity of their running count), brackets outside strings give the depth (a running sum), and commas at
depth 1 separate elements. A block ends at its last separator: the next block starts there again, at depth 1
outside any string, so no state crosses blocks but the offset (an element longer than a block doubles the block).

With ``ids``, the scan also picks each element's image id as VG's readers do (``image_id``, else ``id``, of the
element's own object, depth 2), from the bytes after each such key: the join of VG's split files is planned from
these ids without parsing the files.

Only the framing is checked here; each element is parsed later, on its own (``parse_element``), by whoever reads
its range. A file cut short ends the scan with an ``InputFileError`` that names the elements before the cut
(``Scan.cut``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from sgverbalise.errors import InputFileError
from sgverbalise.readers._json import Malformed, first_present, ident, open_binary

# 2 MiB: a block's arrays (its bytes, and its structural characters' offsets and depths as int64) take about 20
# times its size at once; scanning a 1.27 GB relationships.json rose by 0.17-0.19 GB resident with 8 MiB blocks and
# 0.06 GB with 2 MiB, for about 10% more CPU (32 MiB blocks: 0.7 GB)
BLOCK = 2 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[list(b"[]{},")] = True
_DELTA = np.zeros(256, dtype=np.int64)
_DELTA[list(b"[{")] = 1
_DELTA[list(b"]}")] = -1
# a key of the element's own object that names its image, and the scalar after it (a container: no match)
_ID_KEY = re.compile(rb'"(image_id|id)"[ \t\r\n]*:[ \t\r\n]*'
                     rb'(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|"(?:[^"\\]|\\.)*"|null|true|false)?')
_MISSING = object()
# orjson reads an integer beyond 64 bits as a float; JSON (and the streaming readers) keep it an integer: text
# with a run of 19 digits or more goes to the standard library. Found as a run of 19 zeros once every digit is a
# zero (two passes in C): the regex [0-9]{19,} took about 10x longer, as long as orjson, on elements full of numbers
_DIGITS_AS_ZEROS = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19
PREMATURE_EOF = "invalid JSON: parse error: premature EOF"


@dataclass
class Scan:
    """Where the elements of one JSON file are: element ``k`` is ``bytes[starts[k]:ends[k]]`` (whitespace around
    it included); ``ids[k]`` its image id (with ``ids``; None when it has no usable one); ``cut``: the error of a
    file that breaks off after these elements."""

    url: str
    size: int
    starts: np.ndarray
    ends: np.ndarray
    ids: list[str | None] | None = None
    cut: InputFileError | None = field(default=None)

    def __len__(self) -> int:
        return len(self.starts)


def _quote_mask(block: np.ndarray) -> np.ndarray:
    """1 at each quote of ``block`` not escaped (not after an odd run of backslashes), else 0 (uint8)."""
    mask = (block == _QUOTE).view(np.uint8)
    backslashes = np.flatnonzero(block == _BACKSLASH)
    backslashes = backslashes[backslashes + 1 < len(block)]
    after_backslash = backslashes[block[backslashes + 1] == _QUOTE] + 1
    for q in after_backslash.tolist():  # rare: a run of backslashes before a quote, counted one by one
        j = q - 1
        while j >= 0 and block[j] == _BACKSLASH:
            j -= 1
        if (q - 1 - j) % 2:
            mask[q] = 0
    return mask


def _has_long_number(text: bytes) -> bool:
    """Whether ``text`` holds a run of 19 digits or more (a number orjson may not read as JSON says)."""
    return _LONG_RUN in text.translate(_DIGITS_AS_ZEROS)


def _id_value(token: bytes | None) -> Any:
    """The JSON value of a matched scalar token; a container (no token) is a present, unusable value."""
    if token is None:
        return ["container"]
    try:
        return json.loads(token) if _has_long_number(token) else orjson.loads(token)
    except orjson.JSONDecodeError:
        return ["unparsed"]


def _usable_id(found: dict[str, Any]) -> str | None:
    entry = {k: v for k, v in found.items() if v is not _MISSING}
    try:
        return ident(first_present(entry, "image_id", "id"), "image_id")
    except Malformed:
        return None


def _opening(data: bytes, opener: bytes, url: str, final: bool) -> int | None:
    """Offset of the top-level value's first byte in ``data`` (after a BOM and whitespace); None: more is needed."""
    lead = data.removeprefix(_BOM).lstrip(_WHITESPACE)
    if not lead:
        if final:
            want = "list" if opener == b"[" else "object"
            raise InputFileError(url, 0, len(data), f"empty file, expected a JSON {want}")
        return None
    if lead[:1] != opener:
        want = "a list" if opener == b"[" else "an object"
        raise InputFileError(url, 0, len(data) - len(lead),
                             f"the top-level JSON value is not {want} (starts with {lead[:20]!r})")
    return len(data) - len(lead)


class _Block:
    """One block's structure: its structural characters outside strings, the depth after each, and the string
    parity of every byte (1 inside a string and on its opening quote)."""

    def __init__(self, data: bytes, depth0: int) -> None:
        array = np.frombuffer(data, dtype=np.uint8)
        self.quotes = _quote_mask(array)
        self.in_string = np.bitwise_xor.accumulate(self.quotes)
        # [ ] { } are the bytes x with x & 0xD9 == 0x59 (with Y _ y DEL, dropped after); two cheap passes, not a lookup
        candidates = np.flatnonzero(((array & 0xD9) == 0x59) | (array == ord(",")))
        candidates = candidates[_STRUCTURAL[array[candidates]]]
        self.structural = candidates[self.in_string[candidates] == 0]
        self.chars = array[self.structural]
        self.depth = np.cumsum(_DELTA[self.chars]) + depth0


def _ids(data: bytes, block: _Block, depth0: int, bounds: np.ndarray) -> list[str | None]:
    """The image id of each element between consecutive ``bounds`` (offsets in ``data``): the last ``image_id``
    and ``id`` keys of its own object (depth 2), as ``image_key`` picks them from the parsed entry."""
    per = [{"image_id": _MISSING, "id": _MISSING} for _ in range(len(bounds) - 1)]
    if not per:
        return []
    matches = list(_ID_KEY.finditer(data, max(int(bounds[0]), 0), int(bounds[-1])))
    if matches:
        pos = np.fromiter((m.start() for m in matches), dtype=np.int64, count=len(matches))
        k = np.searchsorted(block.structural, pos) - 1
        depth = np.where(k >= 0, block.depth[np.maximum(k, 0)], depth0)
        element = np.searchsorted(bounds, pos) - 1
        opens = (block.quotes[pos] & block.in_string[pos]).astype(bool)
        ok = opens & (depth == 2) & (element >= 0) & (element < len(per))
        for i in np.flatnonzero(ok).tolist():
            m = matches[i]
            per[int(element[i])][m.group(1).decode()] = _id_value(m.group(2))
    return [_usable_id(found) for found in per]


def _tail_is_element(tail: bytes, opener: bytes) -> bool:
    """Whether the bytes after the last separator of a cut file are one whole element."""
    if not tail.strip(_WHITESPACE):
        return False
    try:
        orjson.loads(tail if opener == b"[" else b"{" + tail + b"}")
    except orjson.JSONDecodeError:
        return False
    return True


def scan(url: str, opener: bytes = b"[", *, ids: bool = False, block: int = BLOCK,
         allow_cut: bool = True) -> Scan:
    """The element boundaries of the JSON list (``opener`` "[") or object ("{") in ``url``; see the module doc.
    A file that breaks off gives the elements before the break and ``cut`` (with ``allow_cut`` False: raises)."""
    closing = b"]" if opener == b"[" else b"}"
    seps: list[np.ndarray] = []
    found_ids: list[str | None] = []
    base, carry, depth0, size = 0, b"", 0, 0
    want = block
    cut = None
    with open_binary(url) as f:
        while True:
            chunk = f.read(want)
            final = len(chunk) < want
            data = carry + chunk
            size = base + len(data)
            start = 0
            if depth0 == 0:
                start = _opening(data, opener, url, final)
                if start is None:
                    carry, want = data, want * 2
                    continue
            parsed = _Block(data, depth0)
            inside = parsed.structural >= start
            depth, chars, where = parsed.depth[inside], parsed.chars[inside], parsed.structural[inside]
            if depth0 == 0:  # the opening bracket: depth 1 from here
                where, chars, depth = where[1:], chars[1:], depth[1:]
            below = np.flatnonzero(depth <= 0)
            close = int(where[below[0]]) if len(below) else None
            commas = where[(depth == 1) & (chars == ord(","))]
            if close is not None:
                commas = commas[commas < close]
                if depth[below[0]] < 0 or data[close:close + 1] != closing:
                    raise InputFileError(url, sum(len(s) for s in seps) + len(commas), base + close,
                                         "invalid JSON: unbalanced brackets")
            previous = np.asarray([start if depth0 == 0 else -1], dtype=np.int64)
            if close is not None:
                bounds = np.concatenate([previous, commas, [close]])
            elif final:
                tail = data[int(commas[-1]) + 1 if len(commas) else int(previous[0]) + 1:]
                last = [len(data.rstrip(_WHITESPACE))] if _tail_is_element(tail, opener) else []
                bounds = np.concatenate([previous, commas, np.asarray(last, dtype=np.int64)])
            elif len(commas):
                bounds = np.concatenate([previous, commas])
            else:
                carry, want = data, want * 2  # an element longer than the block: read more
                continue
            if ids:
                found_ids += _ids(data, parsed, depth0, bounds)
            seps.append(bounds[1:] + base if depth0 else bounds + base)
            if close is not None:
                rest = data[close + 1:] + f.read()
                if rest.strip(_WHITESPACE):
                    raise InputFileError(url, sum(len(s) for s in seps) - 1, base + close + 1,
                                         "invalid JSON: trailing garbage after the top-level value")
                size = base + close + 1 + len(rest)
                break
            if final:
                cut = InputFileError(url, sum(len(s) for s in seps) - 1, size, PREMATURE_EOF)
                break
            used = int(commas[-1]) + 1
            base, carry, depth0, want = base + used, data[used:], 1, block
    bounds = np.concatenate(seps) if seps else np.zeros(1, dtype=np.int64)
    starts, ends = bounds[:-1] + 1, bounds[1:]
    if len(starts) == 1 and cut is None and not _has_content(url, int(starts[0]), int(ends[0])):
        starts, ends = starts[:0], ends[:0]  # an empty list or object
        found_ids = []
    if cut is not None and not allow_cut:
        raise cut
    return Scan(url, size, starts, ends, found_ids if ids else None, cut)


def _has_content(url: str, start: int, end: int) -> bool:
    return bool(read_range(url, start, end).strip(_WHITESPACE))


def read_range(url: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of ``url`` (of its decompressed stream when compressed)."""
    with open_binary(url) as f:
        if start:
            try:
                f.seek(start)
            except (OSError, ValueError):  # a compressed stream that cannot seek: read up to it
                _skip(f, start)
        return f.read(end - start)


def _skip(f, n: int) -> None:
    while n > 0:
        got = f.read(min(n, BLOCK))
        if not got:
            return
        n -= len(got)


def parse_element(data: bytes | memoryview, opener: bytes, url: str, index: int, offset: int) -> Any:
    """One element's value (a list's item, or an object's ``(key, value)``), parsed as the streaming readers
    would: orjson, else the standard library for what orjson refuses and JSON allows (integers beyond 64 bits,
    lone surrogate escapes; orjson would read such an integer as a float). InputFileError naming the element
    and its offset when it is not JSON."""
    text = bytes(data) if opener == b"[" else b"{" + bytes(data) + b"}"
    try:
        if _has_long_number(text):
            raise orjson.JSONDecodeError("a long number: the standard library keeps it exact", "", 0)
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as err:
            raise InputFileError(url, index, offset, f"invalid JSON: {str(err).splitlines()[0]}") from err
    if opener == b"[":
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise InputFileError(url, index, offset, "invalid JSON: an object member is not one key and its value")
    return next(iter(value.items()))


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")
