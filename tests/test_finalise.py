"""The end of the shard job refuses to publish a run whose counts do not add up."""

from __future__ import annotations

from collections import Counter

import pytest

from sgverbalise.pipelines.finalise import build_manifest, check_accounting
from sgverbalise.pipelines.publish import IncompleteRunError
from sgverbalise.vocab import RelationVocab


def test_a_run_whose_counts_do_not_add_up_is_not_published():
    totals = {"images_read": 10, "samples": 8, "images_rejected": 2, "relations_read": 30, "triplets": 20,
              "relation_rejects": 7, "relations_in_rejected_images": 3}
    check_accounting(totals)
    for name in ("samples", "triplets"):
        with pytest.raises(IncompleteRunError, match="no manifest was written"):
            check_accounting(dict(totals, **{name: totals[name] - 1}))
    # a VG file entry that never reached the join (e.g. an image's attributes) leaves the totals intact
    check_accounting(totals, {"vg_entries_read": 50, "vg_entries_joined": 50})
    with pytest.raises(IncompleteRunError, match="VG file entries read 50 != joined 49"):
        check_accounting(totals, {"vg_entries_read": 50, "vg_entries_joined": 49})


def test_no_manifest_when_the_shards_hold_fewer_samples_than_were_made():
    stats = {"images_read": 4, "samples": 4, "relations_read": 8, "triplets": 8}
    vocab = RelationVocab.from_counts(Counter({"on": 8}))
    shards = [{"name": "train/shard-000000.tar", "samples": 3, "bytes": 10240, "sha256": "0" * 64}]
    with pytest.raises(IncompleteRunError, match="the shards hold 3 samples, 4 were made"):
        build_manifest({}, [], shards, stats, {}, vocab)
    assert build_manifest({}, [], [dict(shards[0], samples=4)], stats, {}, vocab)["totals"]["samples"] == 4
