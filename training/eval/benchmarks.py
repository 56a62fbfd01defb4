"""Readers of the benchmarks in their published formats: typed examples and counts of what was found, kept.

Expected layout under ``--data`` (a local folder or any fsspec URL; see docs/evaluation.md)::

    vsr/random/{dev,test}.jsonl        VSR (also vsr/zeroshot/...; --vsr-split picks the folder)
    valse/*.json                       VALSE, one file per instrument (file stem = instrument name)
    svo/svo_probes.csv                 SVO-Probes
    winoground/examples.jsonl          Winoground
    coco/karpathy_test.json            Karpathy dataset_coco.json (images with split "test" are kept)
    coco/karpathy_dev.json             the same format, split "val" (COCO dev, for checkpoint selection)
    flickr/karpathy_test.json          Karpathy dataset_flickr30k.json (split "test")
    images/<suite>/...                 images (or --images ROOT with ROOT/<suite>/...)

An image reference is a tuple of relative paths to try under the suite's image root, first found wins, so the
usual ways of storing each benchmark's images all work. Rows that cannot be read are counted by reason in
``dropped``; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import ijson
import orjson

from sgverbalise.storage import join, url_fs

ImageRef = tuple[str, ...]

SUITES = ("vsr", "valse", "svo", "winoground", "coco", "coco_dev", "flickr")
RETRIEVAL_FILES = {
    "coco": ("coco/karpathy_test.json", "test"),
    "coco_dev": ("coco/karpathy_dev.json", "val"),
    "flickr": ("flickr/karpathy_test.json", "test"),
}

# The VSR paper's meta-categories (its analysis scripts' relation -> category table). "among" is listed under
# both Topological and Unallocated there; the later line wins in their script, so it is Unallocated here too.
VSR_CATEGORIES: dict[str, tuple[str, ...]] = {
    "adjacency": (
        "adjacent to",
        "alongside",
        "at the side of",
        "at the right side of",
        "at the left side of",
        "attached to",
        "at the back of",
        "ahead of",
        "against",
        "at the edge of",
    ),
    "directional": (
        "off",
        "past",
        "toward",
        "down",
        "deep down",
        "up",
        "away from",
        "along",
        "around",
        "from",
        "into",
        "to",
        "across",
        "across from",
        "through",
        "down from",
    ),
    "orientation": ("facing", "facing away from", "parallel to", "perpendicular to"),
    "projective": (
        "on top of",
        "beneath",
        "beside",
        "behind",
        "left of",
        "right of",
        "under",
        "in front of",
        "below",
        "above",
        "over",
        "in the middle of",
    ),
    "proximity": ("by", "close to", "near", "far from", "far away from"),
    "topological": (
        "connected to",
        "detached from",
        "has as a part",
        "part of",
        "contains",
        "within",
        "at",
        "on",
        "in",
        "with",
        "surrounding",
        "consists of",
        "out of",
        "between",
        "inside",
        "outside",
        "touching",
    ),
    "unallocated": ("beyond", "next to", "opposite to", "after", "among", "enclosed by"),
}
RELATION_CATEGORY = {rel: cat for cat, rels in VSR_CATEGORIES.items() for rel in rels}
OTHER_CATEGORY = "other"  # relations the table does not list


# VALSE instrument (file stem) -> piece, as the VALSE paper groups them.
VALSE_PIECES = {
    "existence": "existence",
    "plurals": "plurality",
    "counting-hard": "counting",
    "counting-small-quant": "counting",
    "counting-adversarial": "counting",
    "relations": "relations",
    "action-replacement": "actions",
    "actant-swap": "actions",
    "coreference-standard": "coreference",
    "coreference-hard": "coreference",
    "foil-it": "foil-it",
}


def vsr_category(relation: str) -> str:
    """The VSR meta-category of a relation ("other" when the paper's table does not list it)."""
    return RELATION_CATEGORY.get(relation.strip().lower(), OTHER_CATEGORY)


@dataclass(frozen=True)
class VsrExample:
    """A VSR caption about an image, true (label 1) or false (0)."""

    split: str
    image: ImageRef
    caption: str
    label: int
    relation: str
    subj: str | None = None
    obj: str | None = None
    index: int = 0  # line of the row among the split file's rows (0-based), its id in the score files


@dataclass(frozen=True)
class ValseExample:
    """A VALSE caption and its foil on one image."""

    instrument: str
    key: str
    image: ImageRef
    caption: str
    foil: str
    index: int = 0  # position among all rows of the instrument files in name order: the companion study's id

    @property
    def piece(self) -> str:
        """The VALSE piece of the instrument (the instrument itself when unknown)."""
        return VALSE_PIECES.get(self.instrument, self.instrument)


@dataclass(frozen=True)
class SvoExample:
    """An SVO-Probes sentence, its positive and negative image; ``negated``: subj, verb, obj or mixed."""

    sentence: str
    pos_image: ImageRef
    neg_image: ImageRef
    negated: str
    pos_triplet: str = ""
    neg_triplet: str = ""
    index: int = 0  # row of the CSV (0-based), its id in the score files


@dataclass(frozen=True)
class WinogroundExample:
    """Two captions and two images with the same words in a different order."""

    id: str
    caption_0: str
    caption_1: str
    image_0: ImageRef
    image_1: ImageRef
    tag: str = ""
    tags: tuple[tuple[str, str], ...] = ()  # collapsed_tag, num_main_preds, secondary_tag when present


@dataclass(frozen=True)
class RetrievalSet:
    """A retrieval gallery: images, texts, and the image each text describes."""

    images: list[ImageRef]
    texts: list[str]
    text_image: list[int]


@dataclass
class Loaded:
    """What a reader found: the examples kept, how many rows it saw and why the others were dropped."""

    suite: str
    examples: list[Any]
    found: int
    dropped: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows per split file (VSR), malformed ones included

    @property
    def kept(self) -> int:
        """Number of examples kept (for retrieval: gallery images, like ``found``)."""
        if self.examples and isinstance(self.examples[0], RetrievalSet):
            return sum(len(s.images) for s in self.examples)
        return len(self.examples)


class BenchmarkMissing(FileNotFoundError):
    """The benchmark's files are not where the layout says."""


def _exists(url: str) -> bool:
    fs, path = url_fs(url)
    return fs.exists(path)


def _require(url: str, suite: str) -> str:
    if not _exists(url):
        raise BenchmarkMissing(f"{suite}: {url} not found (see docs/evaluation.md for the expected layout)")
    return url


def _jsonl(url: str) -> Iterator[dict | None]:
    """Rows of a JSON-lines file; None for a line that is not a JSON object."""
    with fsspec.open(url, "rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield None
                continue
            yield row if isinstance(row, dict) else None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def read_vsr(data: str, split_kind: str = "random", splits: tuple[str, ...] = ("dev", "test")) -> Loaded:
    """VSR ``{split_kind}/{split}.jsonl`` files: captions with a 0/1 label, per split."""
    out = Loaded("vsr", [], 0)
    urls = [join(data, "vsr", split_kind, f"{s}.jsonl") for s in splits]
    present = [(s, u) for s, u in zip(splits, urls, strict=True) if _exists(u)]
    if not present:
        raise BenchmarkMissing(f"vsr: none of {urls} found (see docs/evaluation.md)")
    for split, url in present:
        out.files.append(url)
        out.rows[split] = 0
        for index, row in enumerate(_jsonl(url)):
            out.found += 1
            out.rows[split] += 1
            if row is None:
                out.dropped["malformed"] += 1
                continue
            image, caption, relation = _text(row.get("image")), _text(row.get("caption")), row.get("relation")
            label = row.get("label")
            if image is None or caption is None or label not in (0, 1, True, False):
                out.dropped["malformed"] += 1
                continue
            name = posixpath.basename(image)
            out.examples.append(
                VsrExample(
                    split=split,
                    image=(name, f"train2017/{name}", f"val2017/{name}"),
                    caption=caption,
                    label=int(label),
                    relation=str(relation or "").strip(),
                    subj=_text(row.get("subj")),
                    obj=_text(row.get("obj")),
                    index=index,
                )
            )
    return out


def _valid_valse(row: dict, min_votes: int) -> bool:
    mturk = row.get("mturk")
    votes = mturk.get("caption") if isinstance(mturk, dict) else None
    return isinstance(votes, int | float) and votes >= min_votes


def read_valse(data: str, min_votes: int = 2) -> Loaded:
    """VALSE ``valse/*.json`` (one per instrument): valid examples only (``mturk.caption >= min_votes``)."""
    out = Loaded("valse", [], 0)
    fs, folder = url_fs(join(data, "valse"))
    files = sorted(fs.glob(posixpath.join(folder, "*.json")))
    if not files:
        raise BenchmarkMissing(f"valse: no *.json under {join(data, 'valse')} (see docs/evaluation.md)")
    for path in files:
        instrument = posixpath.splitext(posixpath.basename(path))[0]
        out.files.append(join(data, "valse", posixpath.basename(path)))
        with fs.open(path, "rb") as fh:
            content = orjson.loads(fh.read())
        if not isinstance(content, dict):
            raise ValueError(f"valse: {path} is not a JSON object of examples")
        for key, row in content.items():  # file order, which the companion study's ids count in
            out.found += 1
            if not isinstance(row, dict):
                out.dropped["malformed"] += 1
                continue
            image, caption, foil = (
                _text(row.get("image_file")),
                _text(row.get("caption")),
                _text(row.get("foil")),
            )
            if image is None or caption is None or foil is None:
                out.dropped["malformed"] += 1
                continue
            if not _valid_valse(row, min_votes):
                out.dropped[f"not valid (mturk.caption < {min_votes})"] += 1
                continue
            dataset = _text(row.get("dataset"))
            candidates = [f"{instrument}/{image}"] + ([f"{dataset}/{image}"] if dataset else []) + [image]
            out.examples.append(
                ValseExample(instrument, str(key), tuple(candidates), caption, foil, index=out.found - 1)
            )
    return out


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _svo_image(image_id: Any, url: Any) -> ImageRef:
    names: list[str] = []
    image_id = str(image_id or "").strip()
    if image_id:
        names += [f"{image_id}.jpg", f"{image_id}.png", image_id]
    base = posixpath.basename(str(url or "").split("?")[0])
    if base and base not in names:
        names.append(base)
    return tuple(names)


def read_svo(data: str) -> Loaded:
    """SVO-Probes ``svo/svo_probes.csv``: a sentence with a positive and a negative image."""
    url = _require(join(data, "svo", "svo_probes.csv"), "svo")
    out = Loaded("svo", [], 0, files=[url])
    with fsspec.open(url, "rb") as fh:
        reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline=""))
        for index, row in enumerate(reader):
            out.found += 1
            sentence = _text(row.get("sentence"))
            pos = _svo_image(row.get("pos_image_id"), row.get("pos_url"))
            neg = _svo_image(row.get("neg_image_id"), row.get("neg_url"))
            if sentence is None or not pos or not neg:
                out.dropped["malformed"] += 1
                continue
            kinds = [k for k in ("subj", "verb", "obj") if _truthy(row.get(f"{k}_neg"))]
            negated = kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none")
            out.examples.append(
                SvoExample(
                    sentence,
                    pos,
                    neg,
                    negated,
                    str(row.get("pos_triplet") or ""),
                    str(row.get("neg_triplet") or ""),
                    index,
                )
            )
    return out


def _winoground_image(name: str) -> ImageRef:
    stem, ext = posixpath.splitext(name)
    if ext.lower() in (".png", ".jpg", ".jpeg"):
        return (name, f"images/{name}")
    return (f"{name}.png", f"images/{name}.png", f"{name}.jpg", name)


def read_winoground(data: str) -> Loaded:
    """Winoground ``winoground/examples.jsonl``: caption_0/1, image_0/1 (names without extension) and tags."""
    url = _require(join(data, "winoground", "examples.jsonl"), "winoground")
    out = Loaded("winoground", [], 0, files=[url])
    for row in _jsonl(url):
        out.found += 1
        if row is None:
            out.dropped["malformed"] += 1
            continue
        fields = [_text(row.get(k)) for k in ("caption_0", "caption_1", "image_0", "image_1")]
        if any(f is None for f in fields):
            out.dropped["malformed"] += 1
            continue
        c0, c1, i0, i1 = fields
        out.examples.append(
            WinogroundExample(
                str(row.get("id", out.found - 1)),
                c0,
                c1,
                _winoground_image(i0),
                _winoground_image(i1),
                str(row.get("tag") or ""),
                tuple(
                    (k, str(row[k]))
                    for k in ("collapsed_tag", "num_main_preds", "secondary_tag")
                    if row.get(k) not in (None, "")
                ),
            )
        )
    return out


def read_karpathy(url: str, split: str, suite: str) -> Loaded:
    """A Karpathy ``dataset_*.json``: images of ``split`` (all when images carry no split), their captions."""
    _require(url, suite)
    out = Loaded(suite, [], 0, files=[url])
    gallery = RetrievalSet([], [], [])
    with fsspec.open(url, "rb") as fh:
        for image in ijson.items(fh, "images.item"):
            out.found += 1
            if not isinstance(image, dict):
                out.dropped["malformed"] += 1
                continue
            if image.get("split", split) != split:
                out.dropped[f"split is not {split}"] += 1
                continue
            filename = _text(image.get("filename"))
            sentences = image.get("sentences")
            raws = (
                [_text(s.get("raw")) for s in sentences if isinstance(s, dict)]
                if isinstance(sentences, list)
                else []
            )
            raws = [r for r in raws if r]
            if filename is None or not raws:
                out.dropped["malformed"] += 1
                continue
            filepath = _text(image.get("filepath"))
            ref = ((f"{filepath}/{filename}",) if filepath else ()) + (filename,)
            index = len(gallery.images)
            gallery.images.append(ref)
            gallery.texts.extend(raws)
            gallery.text_image.extend([index] * len(raws))
    if gallery.images:
        out.examples.append(gallery)
    return out


@dataclass(frozen=True)
class ReadOptions:
    """Options of the readers: the VSR split folder and VALSE's validity threshold."""

    vsr_split: str = "random"
    valse_min_votes: int = 2


def _retrieval_reader(suite: str) -> Callable[[str, ReadOptions], Loaded]:
    rel, split = RETRIEVAL_FILES[suite]
    return lambda data, opts: read_karpathy(join(data, rel), split, suite)


READERS: dict[str, Callable[[str, ReadOptions], Loaded]] = {
    "vsr": lambda data, opts: read_vsr(data, opts.vsr_split),
    "valse": lambda data, opts: read_valse(data, opts.valse_min_votes),
    "svo": lambda data, opts: read_svo(data),
    "winoground": lambda data, opts: read_winoground(data),
    **{suite: _retrieval_reader(suite) for suite in RETRIEVAL_FILES},
}


def read_suite(suite: str, data: str, options: ReadOptions | None = None) -> Loaded:
    """Read one suite's files under ``data`` (raises BenchmarkMissing when they are absent)."""
    if suite not in READERS:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return READERS[suite](data, options or ReadOptions())


def image_refs(loaded: Loaded) -> list[ImageRef]:
    """Every image reference of a suite's examples, in example order (with repeats)."""
    refs: list[ImageRef] = []
    for ex in loaded.examples:
        if isinstance(ex, VsrExample | ValseExample):
            refs.append(ex.image)
        elif isinstance(ex, SvoExample):
            refs += [ex.pos_image, ex.neg_image]
        elif isinstance(ex, WinogroundExample):
            refs += [ex.image_0, ex.image_1]
        elif isinstance(ex, RetrievalSet):
            refs += ex.images
    return refs
