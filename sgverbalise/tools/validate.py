"""``sgv validate``: tar integrity, every sample against ``schemas/sample.schema.json`` (or basic checks for
other WebDataset shards), duplicate keys, and the manifest's consistency (counts, bytes, sha256, totals,
relations.json, rejects files, each split's sizes.json when present) or img2dataset's side files. One located
problem per line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sgverbalise.schemas import validator
from sgverbalise.schemas.layout import MANIFEST, REJECTS_DIR, ShardSet, sizes_name, split_sizes
from sgverbalise.storage import redact, url_fs
from sgverbalise.tools.scan import (
    GENERIC,
    MISSING,
    SGV,
    Problem,
    Sample,
    ShardStream,
    detect_format,
    ext_kind,
    image_info,
    parse_json,
    progress_bar,
    read_relations,
    streams,
)
from sgverbalise.tools.sidecars import read_parquet, read_stats

_MAX_MESSAGE = 240


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _schema_problems(where: str, name: str, obj: Any, key: str | None = None) -> list[Problem]:
    errors = sorted(
        validator(name).iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    return [Problem(where, _clip(f"{e.json_path}: {e.message}"), key) for e in errors]


@dataclass
class Report:
    """What validate found: problems (exit 1) and warnings (reported, not failures)."""

    path: str
    format: str
    shards: int = 0
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_json(self) -> dict:
        """The report as a JSON object."""
        return {
            "path": self.path,
            "format": self.format,
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "problems": [p.to_json() for p in self.problems],
            "warnings": [w.to_json() for w in self.warnings],
        }


class _Checker:
    """Per-sample checks; keeps the state that spans samples (keys seen, sums for the manifest totals)."""

    def __init__(
        self, fmt: str, report: Report, relation_ids: dict[int, str] | None, decode_images: bool
    ) -> None:
        self.fmt, self.report, self.relation_ids, self.decode = fmt, report, relation_ids, decode_images
        self.seen: dict[str, str] = {}
        self.triplets = 0
        self.vsg_captions = 0

    def problem(self, sample: Sample, message: str) -> None:
        self.report.problems.append(Problem(sample.shard.name, _clip(message), sample.key))

    def check(self, sample: Sample) -> None:
        first = self.seen.get(sample.key)
        if first is not None:
            self.problem(sample, f"duplicate key (first seen in {first})")
        else:
            self.seen[sample.key] = sample.shard.name
        images = {}
        for ext, data in sample.members.items():
            kind = ext_kind(ext)
            if kind == "pickled":
                self.report.warnings.append(
                    Problem(
                        sample.shard.name,
                        f"member .{ext} holds pickled data: it is never unpickled, so it is not checked",
                        sample.key,
                    )
                )
            elif kind == "image":
                info, error = image_info(data, self.decode)
                if error:
                    self.problem(sample, f".{ext} is not a readable image ({error})")
                else:
                    images[ext] = info
            elif kind == "text":
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    self.problem(sample, f".{ext} is not UTF-8 text ({exc.reason} at byte {exc.start})")
        if self.fmt == SGV:
            self._check_ours(sample, images)
        elif "json" in sample.members:
            obj, error = parse_json(sample.members["json"])
            if error:
                self.problem(sample, f".json is {error}")
            elif not isinstance(obj, dict):
                self.problem(sample, f".json is a {type(obj).__name__}, not an object")
            elif "key" in obj and str(obj["key"]) != sample.key:
                self.problem(sample, f".json says key {obj['key']!r}, the tar says {sample.key!r}")

    def _check_ours(self, sample: Sample, images: dict[str, dict]) -> None:
        if "json" not in sample.members:
            self.problem(sample, "no .json member")
            return
        obj, error = parse_json(sample.members["json"])
        if error:
            self.problem(sample, f".json is {error}")
            return
        schema_problems = _schema_problems(sample.shard.name, "sample", obj, sample.key)
        self.report.problems += schema_problems
        if not isinstance(obj, dict) or schema_problems:
            return
        self.triplets += len(obj["triplets"])
        self.vsg_captions += len(obj["vsg"])
        if obj["key"] != sample.key:
            self.problem(sample, f".json says key {obj['key']!r}, the tar says {sample.key!r}")
        if not len(obj["triplets"]) <= obj["num_triplets"] <= obj["num_relations"]:
            self.problem(
                sample,
                f"counts do not add up: {len(obj['triplets'])} triplets, num_triplets "
                f"{obj['num_triplets']}, num_relations {obj['num_relations']}",
            )
        if obj["vsg"]:
            txt = sample.members.get("txt")
            if txt is None:
                self.problem(sample, "no .txt member although the sample has a VSG caption")
            elif txt.decode("utf-8", "replace") != obj["vsg"][0]:
                self.problem(sample, ".txt differs from the first VSG caption")
        for ext, info in images.items():
            if (info["width"], info["height"]) != (obj["width"], obj["height"]):
                self.problem(
                    sample,
                    f".{ext} is {info['width']}x{info['height']}, the .json says "
                    f"{obj['width']}x{obj['height']}",
                )
        if self.relation_ids is not None:
            for n, t in enumerate(obj["triplets"]):
                expected = self.relation_ids.get(t["relation_id"])
                if expected != t["predicate"]:
                    self.problem(
                        sample,
                        f"triplets[{n}]: relation_id {t['relation_id']} is "
                        f"{expected!r} in relations.json, not {t['predicate']!r}",
                    )


def _manifest_where(shardset: ShardSet) -> str:
    url = shardset.manifest_url or MANIFEST
    return redact(url.rsplit("/", 1)[-1])


def check_manifest(shardset: ShardSet) -> list[Problem]:
    """The manifest against its schema and, for a whole set, its own sums and the shards it does not list."""
    m = shardset.manifest
    if m is None:
        return []
    where = _manifest_where(shardset)
    problems = _schema_problems(where, "manifest", m)
    if not shardset.whole or problems:
        return problems
    split_samples = 0
    for split, info in m["splits"].items():
        shards = info["shards"]
        for field_name in ("samples", "bytes"):
            total = sum(s[field_name] for s in shards)
            if info[field_name] != total:
                problems.append(
                    Problem(
                        where,
                        f"splits.{split}.{field_name} is {info[field_name]}, its shards add up to {total}",
                    )
                )
        split_samples += info["samples"]
    if m["totals"]["samples"] != split_samples:
        problems.append(
            Problem(
                where, f"totals.samples is {m['totals']['samples']}, the splits add up to {split_samples}"
            )
        )
    for name in shardset.unlisted:
        problems.append(Problem(name, "shard is not listed in the manifest"))
    return problems


def load_relation_ids(shardset: ShardSet, report: Report, **storage_options: Any) -> dict[int, str] | None:
    """``{id: predicate}`` from the set's relations.json (problems reported when it is missing or invalid)."""
    found = read_relations(shardset, **storage_options)
    if found is None or shardset.manifest is None:
        return None
    name, vocab, error = found
    if error:
        report.problems.append(Problem(name, "missing (the manifest names it)" if error == MISSING else error))
        return None
    problems = _schema_problems(name, "relations", vocab)
    report.problems += problems
    if problems:
        return None
    ids = {r["id"]: r["predicate"] for r in vocab["relations"]}
    if len(ids) != len(vocab["relations"]):
        report.problems.append(Problem(name, "relation ids are not unique"))
    size = (shardset.manifest.get("relations") or {}).get("size")
    if isinstance(size, int) and size != len(ids):
        report.problems.append(Problem(name, f"has {len(ids)} relations, the manifest says {size}"))
    return ids


def check_sizes(shardset: ShardSet, **storage_options: Any) -> list[Problem]:
    """Each split's sizes.json (open_clip's sample counts), when present, says what the manifest says."""
    m = shardset.manifest
    if m is None or shardset.root is None or not shardset.whole or not isinstance(m.get("splits"), dict):
        return []
    problems: list[Problem] = []
    for split in sorted(m["splits"]):
        name = sizes_name(split)
        fs, path = url_fs(f"{shardset.root.rstrip('/')}/{name}", **storage_options)
        try:
            with fs.open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue  # optional: sets written before it was, or by other tools, have none
        found, error = parse_json(data)
        expected = split_sizes(m, split)
        if error:
            problems.append(Problem(name, error))
        elif found != expected:
            differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k)) \
                if isinstance(found, dict) else ["(not a JSON object)"]
            problems.append(Problem(name, f"differs from the manifest's {split} shards at {', '.join(differ[:5])}"))
    return problems


def check_rejects(shardset: ShardSet, **storage_options: Any) -> list[Problem]:
    """rejects/*.jsonl: every line a valid reject, counts by kind/reason equal to the manifest's."""
    if shardset.manifest is None or shardset.root is None or not shardset.whole:
        return []
    fs, root = url_fs(shardset.root, **storage_options)
    counts: Counter = Counter()
    problems: list[Problem] = []
    for path in sorted(fs.glob(root.rstrip("/") + f"/{REJECTS_DIR}/*.jsonl")):
        name = f"{REJECTS_DIR}/" + path.rsplit("/", 1)[-1]
        with fs.open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                obj, error = parse_json(line)
                if error:
                    problems.append(Problem(f"{name}:{n}", error))
                    continue
                errors = _schema_problems(f"{name}:{n}", "reject", obj)
                problems += errors
                if not errors:
                    counts[f"{obj['kind']}/{obj['reason']}"] += 1
    expected = shardset.manifest.get("rejects") or {}
    for reason in sorted(set(counts) | set(expected)):
        if counts[reason] != expected.get(reason, 0):
            problems.append(
                Problem(
                    f"{REJECTS_DIR}/",
                    f"{reason}: {counts[reason]} rejects on file, the manifest says "
                    f"{expected.get(reason, 0)}",
                )
            )
    return problems


def check_stream(stream: ShardStream, keys: list[str], **storage_options: Any) -> list[Problem]:
    """A read shard against its manifest entry (bytes, sha256, samples, key range) and img2dataset's side
    files."""
    shard, problems = stream.shard, []
    where = shard.name
    entry = shard.entry
    if entry is not None and stream.opened:
        if stream.size != entry.get("bytes"):
            problems.append(
                Problem(where, f"has {stream.size} bytes, the manifest says {entry.get('bytes')}")
            )
        if stream.sha256 != entry.get("sha256"):
            problems.append(
                Problem(where, f"sha256 {stream.sha256} differs from the manifest's {entry.get('sha256')}")
            )
        if stream.complete and stream.samples != entry.get("samples"):
            problems.append(
                Problem(where, f"holds {stream.samples} samples, the manifest says {entry.get('samples')}")
            )
        if (
            stream.complete
            and keys
            and (entry.get("first_key"), entry.get("last_key")) not in ((None, None), (keys[0], keys[-1]))
        ):
            problems.append(
                Problem(
                    where,
                    f"keys run {keys[0]} .. {keys[-1]}, the manifest says "
                    f"{entry.get('first_key')} .. {entry.get('last_key')}",
                )
            )
    if not stream.complete:
        return problems
    try:
        stats = read_stats(shard.url, **storage_options)
        table = read_parquet(shard.url, **storage_options)
    except (OSError, ValueError) as exc:
        return problems + [Problem(where, f"img2dataset side file: {exc}")]
    if stats is not None and isinstance(stats.get("successes"), int) and stats["successes"] != stream.samples:
        problems.append(
            Problem(
                where, f"holds {stream.samples} samples, its _stats.json says {stats['successes']} successes"
            )
        )
    if table is not None and "success_keys" in table:
        want, have = set(table["success_keys"]), set(keys)
        if want != have:
            missing, extra = sorted(want - have), sorted(have - want)
            problems.append(
                Problem(
                    where,
                    f"keys differ from its .parquet's successes: {len(missing)} missing "
                    f"{missing[:3]}, {len(extra)} not in the parquet {extra[:3]}",
                )
            )
    return problems


def validate_set(
    shardset: ShardSet,
    *,
    fmt: str = "auto",
    decode_images: bool = False,
    progress: bool | None = None,
    **storage_options: Any,
) -> Report:
    """Validate a shard set; ``fmt`` is ``auto``, ``sgverbalise`` or ``webdataset``."""
    if fmt == "auto":
        fmt = detect_format(shardset, **storage_options)
    if fmt not in (SGV, GENERIC):
        raise ValueError(f"unknown format {fmt!r}")
    report = Report(redact(shardset.spec), fmt)
    report.problems += check_manifest(shardset)
    relation_ids = load_relation_ids(shardset, report, **storage_options) if fmt == SGV else None
    checker = _Checker(fmt, report, relation_ids, decode_images)
    all_complete = True
    with progress_bar(shardset.known_bytes, "validate", progress) as bar:
        for stream in streams(shardset, bar, **storage_options):
            keys = []
            for sample in stream:
                report.samples += 1
                keys.append(sample.key)
                checker.check(sample)
            report.shards += 1
            report.problems += stream.problems
            report.problems += check_stream(stream, keys, **storage_options)
            all_complete &= stream.complete
    m = shardset.manifest
    if m is not None and shardset.whole and all_complete and fmt == SGV and isinstance(m.get("totals"), dict):
        for name, counted in (("triplets", checker.triplets), ("vsg_captions", checker.vsg_captions)):
            said = m["totals"].get(name)
            if isinstance(said, int) and said != counted:
                report.problems.append(
                    Problem(_manifest_where(shardset), f"totals.{name} is {said}, the samples hold {counted}")
                )
    report.problems += check_rejects(shardset, **storage_options)
    report.problems += check_sizes(shardset, **storage_options)
    return report
