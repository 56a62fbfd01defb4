"""What the shard-tool subcommands share: the PATH argument, --json output, errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PATH_HELP = (
    "a shard, a folder, a prefix, a glob, a brace pattern (shard-{000000..000009}.tar) or a "
    "manifest.json; local or any fsspec URL"
)


def add_path(parser: argparse.ArgumentParser) -> None:
    """PATH, --json and --no-progress."""
    parser.add_argument("path", metavar="PATH", help=PATH_HELP)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        default=None,
        help="no progress bar (it is shown on stderr only when stderr is a terminal)",
    )


def print_json(obj: Any) -> None:
    """One JSON document on stdout (sorted keys, indented)."""
    print(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False))


def error(command: str, message: str) -> int:
    """Report a user-facing error on stderr; the exit status for it (2)."""
    print(f"sgv {command}: error: {message}", file=sys.stderr)
    return 2
