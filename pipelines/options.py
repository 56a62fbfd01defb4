"""Command-line options of the shard job and the typed config they become; the other arguments must be Beam's
own options (known from Beam's ``PipelineOptions`` classes), so a misspelt option of ours is an error, not lost."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field

from sgverbalise.errors import InputError
from sgverbalise.images import ImageConfig
from sgverbalise.storage import absolute
from sgverbalise.verbalise import VSGConfig

# DirectRunner's multi_threading mode was seen to lose elements on apache-beam 2.77: refuse it.
# (option dest, value) -> why; checked on Beam's own reading of the arguments, so both --opt=value and --opt value
REFUSED_BEAM_ARGS = {("direct_running_mode", "multi_threading"): "multi_threading loses elements; use multi_processing"}
DEFAULT_BEAM_ARGS = [
    "--runner=DirectRunner",
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=2",
    "--default_sdk_harness_log_level=WARNING",
]


@dataclass(frozen=True)
class VocabConfig:
    """How the relation vocabulary is chosen (or ``relations`` for a given relations.json)."""

    relations: str | None = None
    mode: str = "all"
    top_k: int | None = None
    min_count: int = 1
    sources: str = "auto"  # which sources' predicates make the vocabulary: auto (gqa when given, else vg), vg, gqa, all


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the output bytes of a shard job (Beam options excluded)."""

    out: str
    vg: str | None = None
    gqa: tuple[str, ...] = ()
    vg_images: tuple[str, ...] = ()
    gqa_images: str | None = None
    records: str | None = None  # the output of sgv ingest, read instead of vg/gqa
    record_sources: tuple[str, ...] = ()  # the sources that ingest read ("vg", "gqa"): set when the job runs
    limit: int | None = None
    allow_partial_inputs: bool = False  # a cut input file is read as far as it goes, and the manifest says so
    lemmatize: bool = False
    relation_aliases: str | None = None
    object_aliases: str | None = None
    vocab: VocabConfig = field(default_factory=VocabConfig)
    vsg: VSGConfig = field(default_factory=VSGConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    val_fraction: float = 0.0
    samples_per_shard: int = 1000
    images_per_unit: int = 2_000  # input images per unit of work (each writes its own shards)
    max_shard_bytes: int | None = 1 << 30
    exclude_coco_ids: str | None = None
    exclude_image_ids: str | None = None

    @property
    def with_images(self) -> bool:
        return bool(self.vg_images or self.gqa_images)

    def manifest_dict(self) -> dict:
        """The config as the manifest records it (paths redacted by the caller)."""
        return asdict(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("inputs and output (local paths or any fsspec URL)")
    io.add_argument("--vg", help="Visual Genome folder (scene_graphs.json, or objects/relationships/... files)")
    io.add_argument("--gqa", action="append", default=[], help="GQA *_sceneGraphs.json (repeatable)")
    io.add_argument("--vg-images", action="append", default=[], help="VG image root, e.g. holding VG_100K/ "
                    "and VG_100K_2/ (repeatable)")
    io.add_argument("--gqa-images", help="GQA images/ folder")
    io.add_argument("--records", help="the output of `sgv ingest` (Parquet records), read instead of --vg/--gqa")
    io.add_argument("--out", required=True, help="output prefix: train/, val/, manifest.json, relations.json, rejects/")
    io.add_argument("--limit", type=int, help="read at most this many images per input file (for trials)")
    add_partial_argument(io)
    norm = parser.add_argument_group("normalisation and vocabulary")
    norm.add_argument("--lemmatize", action="store_true", help="spaCy lookup lemmas (off: the paper's raw strings)")
    norm.add_argument("--relation-aliases", help="VG relationship_alias.txt")
    norm.add_argument("--object-aliases", help="VG object_alias.txt")
    norm.add_argument("--relations", help="a given relations.json instead of one built from corpus counts")
    norm.add_argument("--vocab-mode", choices=["all", "top_k", "min_count"], default="all")
    norm.add_argument("--vocab-top-k", type=int)
    norm.add_argument("--vocab-min-count", type=int, default=1)
    norm.add_argument("--vocab-sources", choices=["auto", "vg", "gqa", "all"], default="auto",
                      help="predicates of which sources form the vocabulary (auto: GQA's when given, as the paper)")
    vsg = parser.add_argument_group("verbalised scene graphs")
    vsg.add_argument("--vsg-k", type=int, default=8, help="triplets per VSG caption")
    vsg.add_argument("--vsg-captions", type=int, default=1, help="VSG captions per image")
    vsg.add_argument("--vsg-sort", choices=["centre", "none"], default="centre")
    vsg.add_argument("--vsg-attributes", type=int, default=0, help="attributes before each name (0: off)")
    vsg.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("images and shards")
    out.add_argument("--max-image-side", type=int, help="downscale images to this longer side (default: originals)")
    out.add_argument("--jpeg-quality", type=int, default=90)
    out.add_argument("--max-image-pixels", type=int, default=ImageConfig.max_pixels,
                     help="larger images are rejected as decompression bombs")
    out.add_argument("--val-fraction", type=float, default=0.0, help="share of images in val/, by key hash")
    out.add_argument("--samples-per-shard", type=int, default=1000)
    out.add_argument("--images-per-unit", type=int, default=2_000,
                     help="input images per unit of work: each unit reads its part of the inputs and writes its own "
                     "shards ({split}/shard-UNIT-PART.tar); as sgv ingest's --records-per-file, so that "
                     "build-shards --records writes the same shards")
    out.add_argument("--max-shard-bytes", type=int, default=1 << 30)
    out.add_argument("--exclude-coco-ids", help="file of COCO ids (one per line) whose VG images are left out")
    out.add_argument("--exclude-image-ids", help="file of image ids ('123' or 'vg-123') that are left out")


def add_partial_argument(parser) -> None:
    parser.add_argument("--allow-partial-inputs", action="store_true",
                        help="accept an input file that is cut or breaks off: keep the entries before the break and "
                        "record the cut (file, entries read, byte) in the manifest; default: the run fails and "
                        "publishes nothing")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The job's config of parsed arguments; InputError names a missing input choice or a value out of range."""
    if not args.vg and not args.gqa and not args.records:
        raise InputError("give --vg and/or --gqa, or --records")
    if args.records and (args.vg or args.gqa or args.limit):
        raise InputError("--records replaces --vg, --gqa and --limit (give those to sgv ingest)")
    check_ranges(args, RANGES)
    return BuildConfig(
        out=args.out.rstrip("/"),
        vg=args.vg,
        gqa=tuple(args.gqa),
        vg_images=tuple(absolute(root) for root in args.vg_images),  # looked up once per image, on any worker
        gqa_images=absolute(args.gqa_images) if args.gqa_images else None,
        records=args.records.rstrip("/") if args.records else None,
        limit=args.limit,
        allow_partial_inputs=args.allow_partial_inputs,
        lemmatize=args.lemmatize,
        relation_aliases=args.relation_aliases,
        object_aliases=args.object_aliases,
        vocab=VocabConfig(args.relations, args.vocab_mode, args.vocab_top_k, args.vocab_min_count,
                          args.vocab_sources),
        vsg=VSGConfig(k=args.vsg_k, captions=args.vsg_captions, sort=args.vsg_sort, attributes=args.vsg_attributes,
                      seed=args.seed),
        image=ImageConfig(max_side=args.max_image_side, quality=args.jpeg_quality, max_pixels=args.max_image_pixels),
        val_fraction=args.val_fraction,
        samples_per_shard=args.samples_per_shard,
        images_per_unit=args.images_per_unit,
        max_shard_bytes=args.max_shard_bytes or None,
        exclude_coco_ids=args.exclude_coco_ids,
        exclude_image_ids=args.exclude_image_ids,
    )


# option -> (least value, greatest value or None); an option left unset (None) is not checked
RANGES = {
    "--limit": (1, None), "--vocab-top-k": (1, None), "--vocab-min-count": (1, None), "--vsg-k": (1, None),
    "--vsg-captions": (1, None), "--vsg-attributes": (0, None), "--max-image-side": (1, None),
    "--jpeg-quality": (1, 100), "--max-image-pixels": (1, None), "--val-fraction": (0.0, 1.0),
    "--samples-per-shard": (1, None), "--images-per-unit": (1, None), "--max-shard-bytes": (0, None),
}


def check_ranges(args: argparse.Namespace, ranges: dict[str, tuple]) -> None:
    """InputError naming the first option of ``ranges`` whose value lies outside its bounds."""
    for option, (low, high) in ranges.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None and (value < low or (high is not None and value > high)):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise InputError(f"{option} must be {bounds}, got {value}")


def beam_parser() -> argparse.ArgumentParser:
    """Beam's own options, as Beam parses them: every loaded ``PipelineOptions`` subclass adds its arguments."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    class Parser(_BeamArgumentParser):
        def error(self, message: str):  # argparse would print usage and exit
            raise InputError(message)

    parser = Parser(allow_abbrev=False, add_help=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():  # as PipelineOptions collects them
        cls._add_argparse_args(parser)
    return parser


def parse_beam_args(extra: list[str]) -> argparse.Namespace:
    """Beam's reading of ``extra`` (``--opt=value`` or ``--opt value``); InputError for an argument that is no Beam
    option (a misspelt option of ours, a stray value), a bad value of one, or a refused one."""
    known, unknown = beam_parser().parse_known_args(extra)
    if unknown:
        raise InputError(f"unrecognized arguments: {' '.join(unknown)}")
    for (dest, value), reason in REFUSED_BEAM_ARGS.items():
        if getattr(known, dest, None) == value:
            raise InputError(f"--{dest}={value} is refused: {reason}")
    return known


def beam_args(extra: list[str]) -> list[str]:
    """Beam pipeline options: the user's (checked by ``parse_beam_args``), on top of DirectRunner in
    multi_processing mode with 2 workers."""
    runner = parse_beam_args(extra).runner or "DirectRunner"
    given = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
    defaults = [a for a in DEFAULT_BEAM_ARGS if a.split("=", 1)[0] not in given]
    if runner not in ("DirectRunner", "direct"):
        defaults = [a for a in defaults if a.startswith("--default_sdk")]
    return defaults + list(extra)
