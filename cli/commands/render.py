"""``sgv render``: a sample's image with its boxes, labels and relation arrows, the VSG caption underneath;
``--grid N`` for a contact sheet of N samples."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from sgverbalise.tools.common import add_path, error, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv render``."""
    add_path(parser)
    parser.add_argument(
        "key", metavar="KEY", nargs="?", help="the sample's key (with --grid: the first sample)"
    )
    parser.add_argument("--out", required=True, help="the PNG file to write")
    parser.add_argument("--grid", type=int, metavar="N", help="a contact sheet of N samples")
    parser.add_argument("--columns", type=int, help="columns of the contact sheet (default: about sqrt(N))")
    parser.add_argument(
        "--size", type=int, help="long side of each rendered image in pixels (default 512, 256 with --grid)"
    )


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Write the PNG; 0, or 2 when PATH or KEY is not found."""
    from sgverbalise.tools import ToolError
    from sgverbalise.tools.paths import resolve
    from sgverbalise.tools.render import contact_sheet, render_members
    from sgverbalise.tools.show import find_sample, iter_from

    if args.grid is None and args.key is None:
        return error("render", "give a KEY, or --grid N for a contact sheet")
    if args.grid is not None and args.grid < 1:
        return error("render", "--grid needs N >= 1")
    size = args.size or (256 if args.grid else 512)
    try:
        shardset = resolve(args.path)
        if args.grid is None:
            samples = [find_sample(shardset, args.key)]
        else:
            samples = list(itertools.islice(iter_from(shardset, args.key), args.grid))
        if not samples:
            raise ToolError("no samples to render")
        tiles = [render_members(s.key, s.members, size=size) for s in samples]
    except ToolError as exc:
        return error("render", str(exc))
    except ValueError as exc:
        return error("render", f"cannot render: {exc}")
    image = tiles[0] if args.grid is None else contact_sheet(tiles, args.columns)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG", optimize=True)
    if args.json:
        print_json(
            {"out": str(out), "keys": [s.key for s in samples], "width": image.width, "height": image.height}
        )
    else:
        print(f"{out}: {len(samples)} sample(s), {image.width}x{image.height}")
    return 0
