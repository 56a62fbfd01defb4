"""``sgv synth``: write a synthetic corpus in the real VG and GQA on-disk formats."""

from __future__ import annotations

import argparse
import json
import logging
import time

from sgverbalise.synth import LAYOUTS, synthesize

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv synth``."""
    parser.add_argument("--out", required=True, help="output folder (gets vg/ and gqa/)")
    parser.add_argument("--images", type=int, required=True, help="number of images, VG and GQA together")
    parser.add_argument("--with-images", action="store_true",
                        help="render shape scenes as JPEGs (graphs true in the pictures)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--gqa-fraction", type=float, default=0.3, help="fraction of the images that are GQA")
    parser.add_argument("--layout", choices=LAYOUTS, default="both",
                        help="VG files: split (objects/relationships/attributes.json), scene_graphs, or both")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered square images")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Write the corpus and print its summary as JSON."""
    start = time.perf_counter()

    def progress(source: str, done: int) -> None:
        log.info("%s: %d images written (%.0f s)", source, done, time.perf_counter() - start)

    summary = synthesize(
        args.out,
        args.images,
        seed=args.seed,
        with_images=args.with_images,
        gqa_fraction=args.gqa_fraction,
        layout=args.layout,
        image_size=args.image_size,
        progress=progress,
    )
    log.info("done in %.1f s", time.perf_counter() - start)
    print(json.dumps(summary, indent=2))
    return 0
