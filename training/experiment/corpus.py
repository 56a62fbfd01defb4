"""The training side of the experiment: web shards and a scene-graph exclusion list, with no held-out pair.

* ``WEB_STYLE``: how ``sgverbalise.synth.web.write_web_shards`` writes the experiment's web set: training
  scenes (``heldout.training_scene``), captions that name every object of the scene in a random order (a
  relation only one time in ten) and give every object its article ("an orange square"),
  the ``.json`` also lists the scene's objects under ``objects`` (an additional column, as img2dataset keeps
  them), no ``_stats.json``.
* ``STATEMENTS_WEB_STYLE``: the same scenes, but every caption one true relation of the scene and the
  ``.json`` with its ``"foil"`` (``WebStyle.captions="statements"``): the upper-bound arm's web set, trained
  with ``data.foils`` (``configs/experiment/upper.yaml``), the probes' own kind of supervision.
* ``heldout_image_keys``: the sample keys (``vg-12``, ``gqa-2500003``) of the images of a synthetic VG/GQA
  corpus that show a held-out pair, for ``build-shards --exclude-image-ids``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from sgverbalise.readers import iter_gqa, iter_vg
from sgverbalise.synth import COLOURS, SHAPES
from sgverbalise.synth.web import WebStyle

from .heldout import is_heldout, training_scene

WEB_STYLE = WebStyle(
    scenes=training_scene,
    stream="sgv-experiment-web",
    templates=("{objs}", "{objs}", "photo of {objs}", "picture of {objs}", "stock image: {objs}"),
    an=True,
    columns=("url", "key", "status", "error_message", "width", "height", "caption", "sha256"),
    list_objects=True,
    stats=False,
    name_all=True,
)

STATEMENTS_WEB_STYLE = replace(WEB_STYLE, captions="statements")


def object_pairs(names: Iterable[str], attributes: Iterable[str]) -> list[tuple[str, str]]:
    """The (colour, shape) pairs an object's names and attributes describe ("red circle", or "circle" with
    the attribute "red")."""
    words = [w for text in [*names, *attributes] for w in text.lower().split()]
    colours = [w for w in words if w in COLOURS]
    shapes = [w for w in words if w in SHAPES]
    return [(c, s) for c in colours for s in shapes]


def _records(vg: str | None, gqa: str | None) -> Iterator[tuple[str, dict]]:
    if vg:
        for record, _ in iter_vg(vg, regions=False):
            if record is not None:
                yield "vg", record
    if gqa:
        for record, _ in iter_gqa(gqa):
            if record is not None:
                yield "gqa", record


def heldout_image_keys(vg: str | None, gqa: str | None) -> list[str]:
    """Sample keys (``{source}-{image_id}``) of the corpus images with an object that is a held-out pair."""
    keys = []
    for source, record in _records(vg, gqa):
        for obj in record["objects"]:
            if any(is_heldout(c, s) for c, s in object_pairs(obj["names"], obj["attributes"])):
                keys.append(f"{source}-{record['image_id']}")
                break
    return keys
