"""``sgv train-tokenizer``: train a WordPiece tokenizer on the text of scene-graph and web shards."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv train-tokenizer``."""
    parser.add_argument(
        "--shards",
        action="append",
        required=True,
        metavar="SPEC",
        help="shard set: folder, manifest.json, brace pattern, glob or URL (repeat)",
    )
    parser.add_argument("--out", required=True, help="folder to save the tokenizer in (BertTokenizerFast)")
    parser.add_argument("--split", default="train", help="split of scene-graph shard sets (default: train)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="WordPiece vocabulary size")
    parser.add_argument("--min-frequency", type=int, default=2, help="least count of a kept token")
    parser.add_argument("--cased", action="store_true", help="keep case and accents (default: lower case)")
    parser.add_argument("--max-samples", type=int, default=None, metavar="N", help="read at most N samples")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Train, save and print a summary as JSON."""
    # torch/transformers are imported only when this command runs
    from sgverbalise.training.data.tokenizer import shard_texts, train_tokenizer

    texts = shard_texts(args.shards, split=args.split, max_samples=args.max_samples)
    tokenizer = train_tokenizer(
        texts,
        args.out,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        lowercase=not args.cased,
    )
    log.info("tokenizer saved in %s", args.out)
    print(json.dumps({"out": args.out, "vocab_size": len(tokenizer)}, indent=2))
    return 0
