"""The main job: Visual Genome and GQA scene graphs (and images) to WebDataset shards with a manifest.

    sgv build-shards --vg DIR --gqa FILE --vg-images DIR --gqa-images DIR --out URL [options] [Beam options]

Runs on DirectRunner (multi_processing, 2 workers) by default; any Beam runner with ``--runner=...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import apache_beam as beam

from sgverbalise.normalise import NormaliseConfig
from sgverbalise.pipelines import options as opts
from sgverbalise.pipelines import preflight
from sgverbalise.pipelines.finalise import FinaliseFn, input_fingerprints, summarise
from sgverbalise.pipelines.ingest import IngestedUnits
from sgverbalise.pipelines.ingested import record_sources
from sgverbalise.pipelines.publish import MergeRejects, run_job
from sgverbalise.pipelines.transforms import (
    CUTS,
    LEFT_OUT,
    REJECT_FILES,
    STATS,
    left_out_sources,
    read_id_list,
    sum_counters,
)
from sgverbalise.pipelines.units import PlanUnits, UnitFn, Vocabulary
from sgverbalise.schemas.layout import MANIFEST
from sgverbalise.storage import redact
from sgverbalise.vocab import RelationVocab

log = logging.getLogger(__name__)


def manifest_config(cfg: opts.BuildConfig) -> dict:
    """The config as the manifest records it: URLs redacted, the output prefix left out (it may move)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "out"}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return redact(value) if isinstance(value, str) and ("://" in value or "@" in value) else value
    return clean(cfg.manifest_dict())


def build_pipeline(pipeline: beam.Pipeline, cfg: opts.BuildConfig) -> beam.PCollection:
    """Adds the whole job to ``pipeline``; returns the one-element PCollection of the manifest."""
    given_vocab = RelationVocab.load(cfg.vocab.relations) if cfg.vocab.relations else None
    norm_cfg = NormaliseConfig(lemmatize=cfg.lemmatize, relation_aliases=cfg.relation_aliases,
                               object_aliases=cfg.object_aliases)
    nothing = pipeline | "Nothing" >> beam.Create([])
    if cfg.records:  # ingest's read rejects are its sorted reject files
        units, read_files, read_stats, cuts = pipeline | "Read" >> IngestedUnits(cfg.records)
        read_rejects = joins = nothing
    else:
        units, read_rejects, read_stats, cuts, joins = pipeline | "Plan" >> PlanUnits(cfg)
        read_files = nothing
    if given_vocab is not None:
        vocab, counted = pipeline | "GivenVocabulary" >> beam.Create([given_vocab]), nothing
    else:
        made_vocab = units | "Vocabulary" >> Vocabulary(cfg, norm_cfg)
        vocab, counted = made_vocab.vocab, made_vocab[STATS]
    # the sources a counted vocabulary leaves out are counted (for its ``excluded``) by the units, not its pre-pass
    left_out = left_out_sources(cfg) if given_vocab is None else frozenset()
    unit_fn = UnitFn(cfg, norm_cfg, read_id_list(cfg.exclude_coco_ids), read_id_list(cfg.exclude_image_ids),
                     left_out)
    made = units | "Units" >> beam.ParDo(unit_fn, vocab=beam.pvalue.AsSingleton(vocab)).with_outputs(
        REJECT_FILES, STATS, CUTS, LEFT_OUT, main="shards")
    left_out_counts = made[LEFT_OUT] | "LeftOutCounts" >> beam.CombineGlobally(sum_counters)
    shards = made.shards

    unit_files = (read_files, made[REJECT_FILES]) | "AllRejectFiles" >> beam.Flatten()
    reject_files = (read_rejects, unit_files) | "Rejects" >> MergeRejects(cfg.out)
    stats = ((read_stats, counted, made[STATS]) | "AllStats" >> beam.Flatten()
             | "SumStats" >> beam.CombinePerKey(sum))
    all_cuts = (cuts, made[CUTS]) | "AllCuts" >> beam.Flatten()

    return (
        pipeline
        | "Once" >> beam.Create([None])
        | "Finalise" >> beam.ParDo(
            FinaliseFn(cfg.out, manifest_config(cfg), input_fingerprints(cfg), bool(left_out)),
            shards=beam.pvalue.AsList(shards),
            stats=beam.pvalue.AsList(stats),
            reject_files=beam.pvalue.AsList(reject_files),
            vocab=beam.pvalue.AsSingleton(vocab),
            cuts=beam.pvalue.AsList(all_cuts),
            joins=beam.pvalue.AsList(joins),
            left_out=beam.pvalue.AsSingleton(left_out_counts),
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgv build-shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    opts.add_arguments(parser)
    return parser


def run_config(cfg: opts.BuildConfig, beam_argv: list[str]) -> dict:
    """Runs the job for ``cfg`` with Beam options ``beam_argv``; returns the manifest that was written."""
    preflight.check_job(cfg, beam_argv)  # InputError on a missing input, an output that is a file, ...
    if cfg.records and not cfg.record_sources:
        cfg = dataclasses.replace(cfg, record_sources=record_sources(cfg.records))
    log.info("build-shards: %s -> %s", [redact(u) for u in [cfg.vg, *cfg.gqa, cfg.records] if u], redact(cfg.out))
    result, manifest = run_job(cfg.out, MANIFEST, lambda pipeline: build_pipeline(pipeline, cfg), beam_argv,
                               job="build-shards")
    log.info("counters: %s", counters(result))
    log.info("build-shards done:\n%s", summarise(manifest))
    return manifest


def counters(result) -> dict[str, int]:
    """The job's Beam metric counters by name (committed values where the runner has them)."""
    try:
        found = result.metrics().query()["counters"]
    except Exception:  # some runners report no metrics
        return {}
    totals: dict[str, int] = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def run(argv: list[str] | None = None) -> dict:
    """Entry point: parses our arguments, passes the rest to Beam, runs; returns the manifest."""
    args, beam_argv = build_parser().parse_known_args(argv)
    return run_config(opts.config_from_args(args), beam_argv)


