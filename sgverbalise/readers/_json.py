"""Streaming JSON helpers shared by the readers: bounded-memory iteration, joins by image id, value checks."""

from __future__ import annotations

import gzip
import lzma
import re
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fsspec
import ijson

from sgverbalise.errors import InputFileError

_INT32 = (-(2**31), 2**31 - 1)
_INT32_MIN, _INT32_MAX = _INT32
_INT64 = (-(2**63), 2**63 - 1)
_WHITESPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
# Errors of a compressed stream that is cut or corrupt: like a JSON syntax error, not recoverable per record.
_STREAM_ERRORS = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    zipfile.BadZipFile,
    lzma.LZMAError,
    UnicodeDecodeError,
)


class Malformed(ValueError):
    """A JSON value that cannot be represented in the canonical record shape."""


# ----------------------------------------------------------------------------------------------------
# Streaming


def open_binary(url: str):
    """An fsspec file context for ``url`` (any fsspec URL), decompressed by its extension."""
    return fsspec.open(url, "rb", compression="infer")


# A \uXXXX escape of a high surrogate not followed by a low one, or of a low surrogate not preceded by a high one.
# JSON allows them; ijson's C backend turns the first into "?" and fails on the second, its Python backend keeps
# them (and the record checks then reject the value).
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
_SURROGATE_TAIL = 12  # an escape and the escape after it: what a match needs to be decided


class _LoneSurrogate(Exception):
    """The stream holds a lone surrogate escape: parse it with the Python backend."""


class _Prefixed:
    """A read-only byte stream: ``head`` first, then the rest of ``raw``; with ``scan``, a lone surrogate
    escape raises ``_LoneSurrogate`` (a match is decided once the 6 bytes after it have been read, or at the end)."""

    def __init__(self, head: bytes, raw: Any, scan: bool = False) -> None:
        self._head = head
        self._raw = raw
        self._scan = scan
        self._tail = b""
        self.consumed = 0  # bytes handed to the parser, the stripped lead included

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            data = self._raw.read(size)
        elif size is None or size < 0:
            data, self._head = self._head + self._raw.read(), b""
        else:
            data, self._head = self._head[:size], self._head[size:]
        self.consumed += len(data)
        if self._scan:
            window = self._tail + data
            decided = len(window) if not data else len(window) - 6
            # Substring tests are much faster than the regex: run it only when a surrogate escape may be there.
            if (b"\\ud" in window or b"\\uD" in window) and any(
                m.end() <= decided for m in _LONE_SURROGATE.finditer(window)
            ):
                raise _LoneSurrogate
            self._tail = window[-_SURROGATE_TAIL:]
        return data


def _checked_stream(raw: Any, url: str, opener: bytes, scan: bool = False) -> _Prefixed:
    """``raw`` with its first JSON token checked to be ``opener`` ("[" or "{"); InputFileError otherwise."""
    head = stripped = b""
    while not stripped:
        chunk = raw.read(4096)
        if not chunk:
            break
        head += chunk
        stripped = head.removeprefix(_BOM).lstrip(_WHITESPACE)
    if not stripped:
        raise InputFileError(url, 0, len(head), f"empty file, expected a JSON {'list' if opener == b'[' else 'object'}")
    if stripped[:1] != opener:
        want = "a list" if opener == b"[" else "an object"
        raise InputFileError(url, 0, len(head) - len(stripped),
                             f"the top-level JSON value is not {want} (starts with {stripped[:20]!r})")
    source = _Prefixed(stripped, raw, scan)
    source.consumed = len(head) - len(stripped)
    return source


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _stream(url: str, opener: bytes) -> Iterator[Any]:
    """Top-level items of a JSON list (opener "[") or (key, value) pairs of a JSON object (opener "{")."""
    backend = ijson
    done = 0
    while True:
        source = None
        try:
            with open_binary(url) as raw:
                source = _checked_stream(raw, url, opener, scan=backend is ijson)
                if opener == b"[":
                    values = backend.items(source, "item", use_float=True)
                else:
                    values = backend.kvitems(source, "", use_float=True)
                for index, value in enumerate(values):
                    if index >= done:
                        done += 1
                        yield value
            return
        except _LoneSurrogate:
            backend = ijson.get_backend("python")
            continue
        except ijson.JSONError as err:
            # The C decoder stops on integers beyond 64 bits, which JSON allows: go on with the Python one.
            if "integer overflow" in str(err) and backend is ijson:
                backend = ijson.get_backend("python")
                continue
            raise InputFileError(url, done, _offset(source), f"invalid JSON: {_first_line(err)}") from err
        except _STREAM_ERRORS as err:
            raise InputFileError(url, done, _offset(source), f"unreadable stream: {_first_line(err)}") from err


def _offset(source: _Prefixed | None) -> int:
    return source.consumed if source is not None else 0


def iter_list(url: str) -> Iterator[Any]:
    """The items of the JSON list in ``url``, one at a time (InputFileError, a ValueError, on broken JSON)."""
    return _stream(url, b"[")


def iter_dict(url: str) -> Iterator[tuple[str, Any]]:
    """The (key, value) pairs of the JSON object in ``url``, one at a time (InputFileError on broken JSON)."""
    return _stream(url, b"{")


def join_by_image(
    streams: list[tuple[str, Iterable[Any]]], key: Callable[[Any], str | None]
) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Join entries of several streams by image id: yields ``(image_id, {stream name: entry})``.

    The streams are read round-robin, one entry each per turn. An image's group is yielded as soon as every
    stream has given an entry for it or is exhausted, so aligned streams (same image order, as in the official
    releases) keep at most one group in memory. Misaligned streams are still joined right, at the cost of
    holding the groups not yet complete: memory grows with how far apart the streams are. An image missing
    from one stream is yielded (without that stream's entry) when that stream ends; a second entry for the
    same image in the same stream starts a new group. An entry without a usable id (``key`` returns None) is
    yielded alone at once as ``(None, {name: entry})``.
    """
    iterators = {name: iter(values) for name, values in streams}
    live = list(iterators)
    pending: dict[str, deque[dict[str, Any]]] = {}

    def complete(group: dict[str, Any]) -> bool:
        return all(name in group for name in live)

    try:
        while live:
            for name in list(live):
                try:
                    entry = next(iterators[name])
                except StopIteration:
                    live.remove(name)
                    for image_id in list(pending):
                        groups = pending[image_id]
                        while groups and complete(groups[0]):
                            yield image_id, groups.popleft()
                        if not groups:
                            del pending[image_id]
                    continue
                image_id = key(entry)
                if image_id is None:
                    yield None, {name: entry}
                    continue
                groups = pending.setdefault(image_id, deque())
                for group in groups:
                    if name not in group:
                        group[name] = entry
                        break
                else:
                    groups.append({name: entry})
                while groups and complete(groups[0]):
                    yield image_id, groups.popleft()
                if not groups:
                    del pending[image_id]
    finally:
        for values in iterators.values():
            close = getattr(values, "close", None)
            if close is not None:
                close()


# ----------------------------------------------------------------------------------------------------
# Value checks: each returns the value in record shape or raises Malformed.


def ignore(*_: Any) -> None:
    """A callback for malformed values that records nothing (a reader's ``bad`` when only counting)."""


def short(value: Any, limit: int = 80) -> str:
    """A short repr of ``value`` for a reject's detail."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def first_present(entry: dict, *keys: str) -> Any:
    """The value of the first of ``keys`` present and not null in ``entry``, else None."""
    for k in keys:
        value = entry.get(k)
        if value is not None:
            return value
    return None


def _text(value: str, what: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise Malformed(f"{what}: not encodable as UTF-8") from err
    return value


def ident(value: Any, what: str = "id") -> str:
    """An id as a string: a JSON integer or a non-blank string."""
    # Fast paths here and below: the common case (an int, an ASCII str) first, with the same result the general
    # checks give it; they cost about half the reading of a VG record, called once or more per field.
    if type(value) is int or isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return _text(value, what)
    raise Malformed(f"{what}: expected an integer or a non-empty string, got {short(value, 40)}")


def opt_ident(value: Any, what: str = "id") -> str | None:
    """An optional id as a string (None stays None)."""
    return None if value is None else ident(value, what)


def _integer(value: Any, what: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed(f"{what}: expected an integer, got {short(value, 40)}")
    if not bounds[0] <= value <= bounds[1]:
        raise Malformed(f"{what}: {value} is out of range")
    return value


def req_int(value: Any, what: str) -> int:
    """A required 32-bit integer (an integral float is taken as its integer)."""
    if type(value) is int and _INT32_MIN <= value <= _INT32_MAX:
        return value
    return _integer(value, what, _INT32)


def opt_int(value: Any, what: str, *, wide: bool = False) -> int | None:
    """An optional 32-bit (``wide``: 64-bit) integer."""
    return None if value is None else _integer(value, what, _INT64 if wide else _INT32)


def req_str(value: Any, what: str) -> str:
    """A required string."""
    if type(value) is str and value.isascii():
        return value
    if not isinstance(value, str):
        raise Malformed(f"{what}: expected a string, got {short(value, 40)}")
    return _text(value, what)


def opt_str(value: Any, what: str) -> str | None:
    """An optional string."""
    return None if value is None else req_str(value, what)


def str_list(value: Any, what: str) -> list[str]:
    """A list of strings; missing (None) is the empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{what}: expected a list of strings, got {short(value, 40)}")
    return [v if type(v) is str and v.isascii() else req_str(v, what) for v in value]


def id_list(value: Any, what: str) -> list[str]:
    """A list of ids as strings; missing (None) is the empty list."""
    if value is None or type(value) is list and not value:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{what}: expected a list of ids, got {short(value, 40)}")
    return [ident(v, what) for v in value]


def names_of(entry: dict) -> list[str]:
    """An object's names as written: its ``names`` list (or a lone string), else ``[name]``."""
    names = entry.get("names")
    if isinstance(names, str):
        return [_text(names, "names")]
    if names is not None:
        return str_list(names, "names")
    name = entry.get("name")
    if name is None:
        raise Malformed("no 'names' and no 'name'")
    return [req_str(name, "name")]


def box(entry: dict, w_keys: tuple[str, ...] = ("w",), h_keys: tuple[str, ...] = ("h",)) -> dict[str, int]:
    """The x, y, w, h of ``entry`` as integers (w and h from the first of ``w_keys``/``h_keys`` present)."""
    x, y, w, h = entry.get("x"), entry.get("y"), first_present(entry, *w_keys), first_present(entry, *h_keys)
    if type(x) is int and type(y) is int and type(w) is int and type(h) is int and _INT32_MIN <= x <= _INT32_MAX \
            and _INT32_MIN <= y <= _INT32_MAX and _INT32_MIN <= w <= _INT32_MAX and _INT32_MIN <= h <= _INT32_MAX:
        return {"x": x, "y": y, "w": w, "h": h}
    return {"x": req_int(x, "x"), "y": req_int(y, "y"), "w": req_int(w, w_keys[0]), "h": req_int(h, h_keys[0])}


def list_field(entry: dict, key: str) -> list:
    """``entry[key]`` as a list (missing or null is empty); Malformed when it is something else."""
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"'{key}' is not a list: {short(value, 40)}")
    return value
