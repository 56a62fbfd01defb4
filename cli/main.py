"""The ``sgv`` command line: one subcommand per module, imported only when it runs.

A user error (bad option, missing input, bad config) is one line on stderr and exit status 2; with ``-v`` its
traceback is logged too. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import logging
import signal
import sys
from importlib import metadata

from sgverbalise.errors import InputError
from sgverbalise.tools.common import error

log = logging.getLogger(__name__)
DESCRIPTION = (
    "sgverbalise: Visual Genome and GQA scene graphs to WebDataset shards with verbalised scene graphs (VSG) and "
    "relation triplets (MRC), shard tools, and the training and zero-shot evaluation of relation-aware "
    "vision-language models. 'sgv COMMAND --help' describes each command."
)

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


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless it has none worth showing or its help already says it."""

    def _format_action(self, action: argparse.Action) -> str:
        default = action.default
        shown = action.option_strings and not (default is None or default is False or default == []
                                               or default == argparse.SUPPRESS)
        if shown and "default" not in (action.help or ""):
            action = copy.copy(action)
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
        return super()._format_action(action)


def version() -> str:
    try:
        return metadata.version("sgverbalise")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so ``sgv synth`` does not load Beam)."""
    parser = Parser(prog="sgv", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (also after COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        # no abbreviations where Beam's options pass through: a Beam option must never be taken for a prefix of ours
        cmd = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter,
                             allow_abbrev=name not in PASS_THROUGH)
        # SUPPRESS: not given after the command, it leaves the value of -v before it
        cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        if name == command:
            importlib.import_module(module).add_arguments(cmd)
    return parser


def quiet_optional_imports(record: logging.LogRecord) -> bool:
    """False for the warning Beam logs on the root logger when the optional GCP client (apitools) is not
    installed: every Beam command would print it, an error's one line included. Shown with -v."""
    return not (record.name == "root" and str(record.msg).startswith("apitools not found"))


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
        for handler in logging.getLogger().handlers:
            handler.addFilter(quiet_optional_imports)
    try:
        if args.command in PASS_THROUGH:  # checked before the command does any work (demo writes a corpus first)
            from sgverbalise.pipelines.options import parse_beam_args

            parse_beam_args(extra)
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args, extra) or 0)
    except InputError as exc:  # every user error (ToolError, ConfigError, ScoreFileError are kinds of it)
        log.debug("the user error's traceback:", exc_info=True)
        return error(args.command, " ".join(str(exc).split()))


if __name__ == "__main__":
    sys.exit(main())
