"""The trainer's streaming data: shard sources, transforms, tokenizers, per-type streams and mixed batches.

Entry point: ``build_loader(DataConfig(...))`` yields batches of ``training.batches``' contract,
one type each.
"""

from sgverbalise.training.data.sources import SourceConfig, expand_urls, load_relations
from sgverbalise.training.data.streams import PRESETS, DataConfig, MixedBatches, MixedLoader, build_loader, build_stream
from sgverbalise.training.data.tokenizer import encode_texts, load_tokenizer, train_tokenizer
from sgverbalise.training.data.transforms import ImageTransform, swap_left_right

__all__ = [
    "PRESETS",
    "DataConfig",
    "ImageTransform",
    "MixedBatches",
    "MixedLoader",
    "SourceConfig",
    "build_loader",
    "build_stream",
    "encode_texts",
    "expand_urls",
    "load_relations",
    "load_tokenizer",
    "swap_left_right",
    "train_tokenizer",
]
