"""Per-example score files: the project's own (one JSONL per suite) and the companion study's released outputs.

The project's files (``<out>/scores/<suite>.jsonl``) hold one JSON object per line, each with ``suite`` and
``mode`` (``itm``: p(match); ``itc``: cosine) and enough to recompute every figure:

* valse: ``id``, ``key`` (in the instrument's file), ``instrument``, ``piece``, ``caption``, ``foil`` (the scores)
* vsr: ``id``, ``split``, ``label``, ``relation``, ``category``, ``score``

Ids follow the companion study's numbering, so ``--compare`` pairs our examples with its models' ones: VALSE
``<instrument>/<n>`` with n the position among all rows of the 11 instrument files taken in name order (file
order within each, invalid rows counted), VSR the row of the split file, Winoground the example's ``id``.
* winoground: ``id``, ``scores`` (``[[s(c0,i0), s(c0,i1)], [s(c1,i0), s(c1,i1)]]``), the example's tags
* svo: ``id``, ``sentence``, ``pos_image``, ``neg_image``, ``negated``, ``pos``, ``neg``
* coco, coco_dev, flickr: ``direction`` (tr: image query, ir: text query), ``query``, ``rank_itc`` and
  ``rank_rerank`` (0-based rank of the best positive)

The companion study's files (e-bug/fine-grained-evals ``outputs/``) are read as released:
``VALSE/<model>/<model>.jsonl``, ``VSR_random/<model>/<model>_{dev,test}.jsonl``,
``Winoground/<model>/<model>.jsonl``, ``SVO/<model>/<model>.jsonl`` (or the same files directly in ``VALSE/``
etc., or in a folder named otherwise: ``Winoground/albef_4m_ours/albef_4m_ours_07.jsonl`` is model
``albef_4m_ours_07``, one epoch of the study's own ALBEF training). A model is a file stem (less ``_dev`` /
``_test``). Every line's ``score`` is the model's p(match). Malformed input raises ``ScoreFileError`` naming the
file and the line.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterator

import orjson

from sgverbalise.errors import InputError
from sgverbalise.storage import atomic_write, join, url_fs

from .benchmarks import VALSE_PIECES, vsr_category

SCORES_DIR = "scores"
COMPANION_FOLDERS = {"valse": "VALSE", "vsr": "VSR_random", "winoground": "Winoground", "svo": "SVO"}
WINOGROUND_LABEL = re.compile(r"^(.+)_c([01])_i([01])$")
SVO_LABEL = re.compile(r"^(.+)_([pn])$")
SVO_FLAGS = (("subj", "subj_neg"), ("verb", "verb_neg"), ("obj", "obj_neg"))
VALSE_LABEL = re.compile(r"^(.+)_([cf])$")


class ScoreFileError(InputError):
    """A score file that cannot be read as its format says."""


def sha256(url: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    fs, path = url_fs(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_scores(records: list[dict], url: str) -> str:
    """One JSON object per line, keys sorted (same records, same bytes); returns ``url``."""
    body = b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records)
    atomic_write(url, body)
    return url


def _lines(url: str) -> Iterator[tuple[int, dict]]:
    fs, path = url_fs(url)
    with fs.open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise ScoreFileError(f"{url}:{number}: not JSON ({err})") from None
            if not isinstance(row, dict):
                raise ScoreFileError(f"{url}:{number}: not a JSON object")
            yield number, row


def _need(url: str, number: int, row: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ScoreFileError(f"{url}:{number}: missing {', '.join(missing)}")


def read_project_file(url: str) -> list[dict]:
    """The records of one of the project's score files (every line has ``suite``)."""
    rows = []
    for number, row in _lines(url):
        _need(url, number, row, "suite")
        rows.append(row)
    return rows


# ---- the companion study's released outputs ------------------------------------------------------------------


def _score(url: str, number: int, row: dict) -> float:
    value = row.get("score")
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ScoreFileError(f"{url}:{number}: score is not a number")
    return float(value)


def companion_valse(url: str) -> list[dict]:
    """VALSE lines (caption and foil of each example) as records; an example missing one side is an error."""
    pairs: dict[tuple[str, str], dict] = {}
    for number, row in _lines(url):
        _need(url, number, row, "label", "score", "instrument", "type", "id")
        if row["type"] not in ("caption", "foil"):
            raise ScoreFileError(f"{url}:{number}: type is {row['type']!r}, not caption or foil")
        key = (str(row["instrument"]), str(row["id"]))
        instrument = key[0]
        rec = pairs.setdefault(
            key,
            {
                "suite": "valse",
                "mode": "itm",
                "id": f"{instrument}/{key[1]}",
                "instrument": instrument,
                "piece": str(row.get("piece") or VALSE_PIECES.get(instrument, instrument)),
            },
        )
        rec[row["type"]] = _score(url, number, row)
    broken = [r["id"] for r in pairs.values() if "caption" not in r or "foil" not in r]
    if broken:
        raise ScoreFileError(f"{url}: {len(broken)} examples lack a caption or a foil line (e.g. {broken[0]})")
    return list(pairs.values())


def companion_vsr(url: str, split: str) -> list[dict]:
    """VSR lines (label, score, relation) of one split as records."""
    out = []
    for number, row in _lines(url):
        _need(url, number, row, "label", "score", "relation")
        if row["label"] not in (0, 1):
            raise ScoreFileError(f"{url}:{number}: label is {row['label']!r}, not 0 or 1")
        relation = str(row["relation"])
        out.append(
            {
                "suite": "vsr",
                "mode": "itm",
                "split": split,
                "id": str(row.get("id", number - 1)),
                "label": int(row["label"]),
                "relation": relation,
                "category": vsr_category(relation),
                "score": _score(url, number, row),
            }
        )
    return out


def companion_winoground(url: str) -> list[dict]:
    """Winoground lines ``<id>_c<j>_i<k>`` as one record per example with its 2 x 2 scores."""
    tables: dict[str, list[list[float | None]]] = {}
    for number, row in _lines(url):
        _need(url, number, row, "label", "score")
        match = WINOGROUND_LABEL.match(str(row["label"]))
        if not match:
            raise ScoreFileError(f"{url}:{number}: label {row['label']!r} is not <id>_c<j>_i<k>")
        ex, c, i = match.group(1), int(match.group(2)), int(match.group(3))
        tables.setdefault(ex, [[None, None], [None, None]])[c][i] = _score(url, number, row)
    broken = [ex for ex, s in tables.items() if any(v is None for row in s for v in row)]
    if broken:
        raise ScoreFileError(f"{url}: {len(broken)} examples lack one of their 4 scores (e.g. {broken[0]})")
    return [{"suite": "winoground", "mode": "itm", "id": ex, "scores": s} for ex, s in tables.items()]


def companion_svo(url: str) -> list[dict]:
    """SVO-Probes lines ``<n>_p`` (sentence with its positive image) and ``<n>_n`` (with the negative one), with
    ``pos_triplet``, ``neg_triplet`` and the flags ``subj_neg``, ``verb_neg``, ``obj_neg``, as one record per row.

    The lines carry neither the sentence nor the image ids, so only the companion's ``pairwise`` rule (positive
    scored above negative) can be recomputed, not the official per-pair accuracies. ``negated`` is the one part
    flagged (``mixed`` / ``none`` otherwise, as our own files say; the study's notebook counts a row under the first
    flag of subj, verb, obj, and under obj when none is set).
    """
    rows: dict[str, dict] = {}
    for number, row in _lines(url):
        _need(url, number, row, "label", "score")
        match = SVO_LABEL.match(str(row["label"]))
        if not match:
            raise ScoreFileError(f"{url}:{number}: label {row['label']!r} is not <id>_p or <id>_n")
        ex = match.group(1)
        kinds = [part for part, flag in SVO_FLAGS if row.get(flag)]
        rec = rows.setdefault(
            ex,
            {
                "suite": "svo",
                "mode": "itm",
                "id": ex,
                "negated": kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none"),
                "pos_triplet": row.get("pos_triplet"),
                "neg_triplet": row.get("neg_triplet"),
            },
        )
        rec["pos" if match.group(2) == "p" else "neg"] = _score(url, number, row)
    broken = [ex for ex, r in rows.items() if "pos" not in r or "neg" not in r]
    if broken:
        raise ScoreFileError(f"{url}: {len(broken)} rows lack their _p or _n line (e.g. {broken[0]})")
    return list(rows.values())


def _first_file(candidates: list[str]) -> str | None:
    for url in candidates:
        fs, path = url_fs(url)
        if fs.isfile(path):
            return url
    return None


def _nested(root: str, folder: str, name: str) -> str | None:
    """``<folder>/<any>/<name>``: a model's file in a folder named otherwise (``albef_4m_ours/albef_4m_ours_07``)."""
    fs, path = url_fs(root)
    found = sorted(fs.glob(posixpath.join(path, folder, "*", name)))
    return join(root, posixpath.relpath(found[0], path)) if found else None


def companion_files(root: str, model: str) -> dict[str, dict[str, str]]:
    """suite -> {part: url} of one model's companion files under ``root`` (part: "" or the VSR split)."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for suite, folder in COMPANION_FOLDERS.items():
        parts = ("dev", "test") if suite == "vsr" else ("",)
        for part in parts:
            name = f"{model}_{part}.jsonl" if part else f"{model}.jsonl"
            url = _first_file([join(root, folder, model, name), join(root, folder, name)]) or _nested(
                root, folder, name
            )
            if url:
                found[suite][part] = url
    return dict(found)


def companion_models(root: str) -> list[str]:
    """Model names with at least one companion file under ``root``."""
    fs, path = url_fs(root)
    names: set[str] = set()
    for folder in COMPANION_FOLDERS.values():
        base = posixpath.join(path, folder)
        if not fs.isdir(base):
            continue
        files = fs.glob(posixpath.join(base, "*.jsonl")) + fs.glob(posixpath.join(base, "*", "*.jsonl"))
        for found in files:
            names.add(re.sub(r"_(dev|test)$", "", posixpath.basename(found)[: -len(".jsonl")]))
    return sorted(names)


def is_companion(root: str) -> bool:
    """True when ``root`` holds the companion study's folders (VALSE/, VSR_random/, Winoground/ or SVO/)."""
    fs, path = url_fs(root)
    return any(fs.isdir(posixpath.join(path, f)) for f in COMPANION_FOLDERS.values())


def read_companion(root: str, model: str) -> tuple[dict[str, list[dict]], list[str]]:
    """One model's records per suite from the companion study's outputs, and the files read."""
    files = companion_files(root, model)
    if not files:
        raise ScoreFileError(f"no companion files of model {model!r} under {root}")
    records: dict[str, list[dict]] = {}
    for suite, parts in files.items():
        if suite == "valse":
            records[suite] = companion_valse(parts[""])
        elif suite == "winoground":
            records[suite] = companion_winoground(parts[""])
        elif suite == "svo":
            records[suite] = companion_svo(parts[""])
        else:
            records[suite] = [r for split, url in sorted(parts.items()) for r in companion_vsr(url, split)]
    return records, [u for parts in files.values() for u in parts.values()]


def read_scores(source: str, model: str | None = None) -> tuple[dict[str, list[dict]], list[str]]:
    """Records per suite from a score file, a folder of them (``scores/`` or directly), or companion outputs.

    ``model`` picks the companion model (needed when the folder holds several).
    """
    fs, path = url_fs(source)
    if fs.isfile(path):
        files = [source]
    elif is_companion(source):
        models = companion_models(source)
        if model is None and len(models) != 1:
            raise ScoreFileError(f"{source} holds the companion outputs of {len(models)} models; pick one: "
                                 + ", ".join(models))
        return read_companion(source, model or models[0])
    else:
        folder = join(source, SCORES_DIR) if fs.isdir(posixpath.join(path, SCORES_DIR)) else source
        ffs, fpath = url_fs(folder)
        files = [join(folder, posixpath.basename(p)) for p in sorted(ffs.glob(posixpath.join(fpath, "*.jsonl")))]
        if not files:
            raise ScoreFileError(f"no score files (*.jsonl) in {folder}")
    records: dict[str, list[dict]] = defaultdict(list)
    for url in files:
        for row in read_project_file(url):
            records[row["suite"]].append(row)
    return dict(records), files
