"""``sgv verbalise``: print the verbalised scene graphs of a VG folder or GQA file, without Beam."""

from __future__ import annotations

import argparse
import itertools
import json

from sgverbalise.errors import InputError
from sgverbalise.normalise import NormaliseConfig, Normaliser
from sgverbalise.pipelines.preflight import check_inputs
from sgverbalise.readers import iter_gqa, iter_vg
from sgverbalise.triplets import extract
from sgverbalise.verbalise import VSGConfig, verbalise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vg", help="Visual Genome folder or URL")
    parser.add_argument("--gqa", help="GQA *_sceneGraphs.json")
    parser.add_argument("--limit", type=int, default=5, help="images to print")
    parser.add_argument("--k", type=int, default=8, help="triplets per caption")
    parser.add_argument("--captions", type=int, default=1)
    parser.add_argument("--sort", choices=["centre", "none"], default="centre")
    parser.add_argument("--attributes", type=int, default=0, help="attributes before names (0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lemmatize", action="store_true")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    if bool(args.vg) == bool(args.gqa):
        raise InputError("give exactly one of --vg or --gqa")
    check_inputs([("--vg", args.vg), ("--gqa", args.gqa)])
    records = iter_vg(args.vg, limit=args.limit) if args.vg else iter_gqa(args.gqa, limit=args.limit)
    normaliser = Normaliser(NormaliseConfig(lemmatize=args.lemmatize))
    try:
        cfg = VSGConfig(k=args.k, captions=args.captions, sort=args.sort, attributes=args.attributes, seed=args.seed)
    except ValueError as exc:  # --k or --captions below 1, --attributes below 0
        raise InputError(str(exc)) from exc
    for record, rejects in itertools.islice(records, args.limit):
        if record is None:
            print(f"# rejected: {rejects[0]['reason']}: {rejects[0]['detail']}")
            continue
        record = normaliser.record(record)
        extraction = extract(record)
        captions = verbalise(extraction.triplets, cfg, record["source"], record["image_id"])
        if args.json:
            print(json.dumps({"source": record["source"], "image_id": record["image_id"], "vsg": captions,
                              "triplets": len(extraction.triplets), "relations": extraction.num_relations,
                              "rejects": len(extraction.rejects) + len(rejects)}))
            continue
        print(f"{record['source']}-{record['image_id']}: {len(extraction.triplets)} triplets of "
              f"{extraction.num_relations} relations")
        for caption in captions:
            print(f"  {caption}")
    return 0
