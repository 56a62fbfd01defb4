"""Synthetic data made of shape scenes, whose relations are true in their pictures.

* ``scenes``: scene geometry (``make_scene``, ``relation_between`` and the definitions of the predicates).
* ``render``: scenes drawn with Pillow (``render_scene``) and encoded as JPEG (``jpeg_bytes``, ``save_jpeg``).
* ``vocabulary`` and ``graphs``: VG and GQA image entries of scenes, or of random VG-like graphs.
* ``corpus``: ``synthesize``, a corpus in the real VG and GQA on-disk formats (``sgv synth``).
* ``web``: ``write_web_shards``, image-text shards in img2dataset's format. Import it from
  ``sgverbalise.synth.web``: it loads pyarrow and fsspec, which the rest does not need.
"""

from .corpus import LAYOUTS, synthesize
from .graphs import GQA_ID_BASE, gqa_image_id
from .render import JPEG_QUALITY, jpeg_bytes, render_scene, save_jpeg
from .scenes import (
    COLOURS,
    PREDICATES,
    SHAPES,
    Scene,
    SceneObject,
    make_scene,
    near_distance,
    relation_between,
    shape_area,
)
from .vocabulary import GQA_PHRASES

__all__ = [
    "COLOURS", "GQA_ID_BASE", "GQA_PHRASES", "JPEG_QUALITY", "LAYOUTS", "PREDICATES", "SHAPES", "Scene",
    "SceneObject", "gqa_image_id", "jpeg_bytes", "make_scene", "near_distance", "relation_between",
    "render_scene", "save_jpeg", "shape_area", "synthesize",
]
