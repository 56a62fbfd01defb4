"""The ``sgv`` command line: one subcommand per module, imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

# name -> (module, one-line help). A module defines ``add_arguments(parser)`` and ``run(args, extra) -> int``;
# ``extra`` holds the arguments the subcommand did not know (Beam pipeline options, for build-shards).
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("sgverbalise.cli.commands.synth", "write a synthetic corpus in the VG and GQA on-disk formats"),
    "verbalise": ("sgverbalise.cli.commands.verbalise", "print verbalised scene graphs of a VG or GQA input"),
    "vocab": ("sgverbalise.cli.commands.vocab", "build relations.json, the relation vocabulary, from corpus counts"),
    "ingest": ("sgverbalise.cli.commands.ingest", "the Beam job: VG + GQA read once into Parquet scene-graph records"),
    "build-shards": ("sgverbalise.cli.commands.build_shards", "the Beam job: VG + GQA to WebDataset shards"),
    "demo": ("sgverbalise.cli.commands.demo", "generate a small corpus with images and run build-shards on it"),
    "inspect": ("sgverbalise.cli.commands.inspect", "what a shard set holds: samples, bytes, members, keys"),
    "validate": ("sgverbalise.cli.commands.validate", "check tars, samples, keys and manifest"),
    "show": ("sgverbalise.cli.commands.show", "one sample, readable: VSG captions, triplets, entities"),
    "render": ("sgverbalise.cli.commands.render", "draw boxes and relations of samples to PNG"),
    "stats": ("sgverbalise.cli.commands.stats", "frequencies and lengths: table, JSON, plots"),
    "train-tokenizer": ("sgverbalise.cli.commands.train_tokenizer", "train a WordPiece tokenizer on shards' text"),
    "eval": ("sgverbalise.cli.commands.eval", "zero-shot evaluation: VSR, VALSE, SVO-Probes, Winoground, retrieval"),
    "sweep": ("sgverbalise.cli.commands.sweep", "evaluate every checkpoint of a run: skills against training step"),
    "train": ("sgverbalise.cli.commands.train", "pretrain a model: YAML config, --set overrides, DDP, checkpoints"),
    "experiment": ("sgverbalise.cli.commands.experiment", "run a small-scale replication: sgv experiment relations"),
}
# Subcommands that accept unknown arguments (passed on to Beam's PipelineOptions).
PASS_THROUGH = {"ingest", "build-shards", "demo"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so ``sgv synth`` does not load Beam)."""
    parser = argparse.ArgumentParser(prog="sgv", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if a in COMMANDS), None))
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `sgv show ... | head` ends quietly
    if not args.verbose:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args, extra) or 0)


if __name__ == "__main__":
    sys.exit(main())
