"""Tokenizers: load a local folder or train a BERT-style WordPiece tokenizer on shard text; text collation.

A trained tokenizer is saved as a transformers ``BertTokenizerFast`` folder (``tokenizer.json`` +
``tokenizer_config.json``) that ``load_tokenizer`` (``AutoTokenizer``) reads back: BERT normalisation (lower
case, accents stripped), BERT pre-tokenisation (whitespace and punctuation), WordPiece with ``##``
continuations, ``[CLS] text [SEP]`` post-processing, special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]``
(ids 0-4).

The text a tokenizer is trained on (``shard_texts``): web shards' ``.txt`` captions; scene-graph samples' VSG
strings split at their ``[SEP]`` separators, entity names and attributes, triplets' subjects, predicates and
objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

from sgverbalise.shards import read_shard
from training.data.sources import expand_urls

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VSG_SEPARATOR = "[SEP]"


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A fast tokenizer from a local folder (never downloads)."""
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"tokenizer folder {path} does not exist (train one with `sgv train-tokenizer`)"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer in {path} is not a fast tokenizer (word_ids need one)")
    return tokenizer


def sample_texts(sample: dict[str, bytes]) -> Iterator[str]:
    """The texts of one raw shard sample (scene-graph or web)."""
    if "json" in sample:
        meta = orjson.loads(sample["json"])
        for vsg in meta.get("vsg", []) if isinstance(meta, dict) else []:
            yield from (part.strip() for part in vsg.split(VSG_SEPARATOR) if part.strip())
        for entity in meta.get("entities", []) if isinstance(meta, dict) else []:
            yield " ".join([*entity.get("attributes", []), entity["name"]])
        for t in meta.get("triplets", []) if isinstance(meta, dict) else []:
            yield f"{t['subject']} {t['predicate']} {t['object']}"
        if isinstance(meta, dict) and "vsg" in meta:
            return  # a scene-graph sample: its .txt is its first VSG again
    if "txt" in sample:
        text = sample["txt"].decode("utf-8", errors="replace").strip()
        if text:
            yield text


def shard_texts(
    specs: Iterable[str], split: str = "train", max_samples: int | None = None, **storage_options: Any
) -> Iterator[str]:
    """Texts of the samples of the given shard specs, shard by shard (at most ``max_samples`` samples)."""

    def samples() -> Iterator[dict[str, bytes]]:
        for spec in specs:
            for url in expand_urls(spec, split=split, **storage_options):
                for _, members in read_shard(url, **storage_options):
                    yield members

    for members in islice(samples(), max_samples):
        yield from sample_texts(members)


def train_tokenizer(
    texts: Iterable[str],
    out: str | Path | None = None,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
    model_max_length: int = 512,
) -> PreTrainedTokenizerBase:
    """Train a WordPiece tokenizer on ``texts``; saved as a BertTokenizerFast folder when ``out`` is given."""
    core = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    core.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
    )
    core.train_from_iterator(texts, trainer)
    cls_id, sep_id = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    core.decoder = decoders.WordPiece(prefix="##")
    tokenizer = BertTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=lowercase,
        model_max_length=model_max_length,
    )
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out))
    return tokenizer


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, pad_to_max: bool = False
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``word_ids`` (-1 on special and pad tokens, not on [UNK]), long
    tensors [B, L]; L is the longest text (or ``max_length`` with ``pad_to_max``), at most ``max_length``."""
    enc = tokenizer(
        list(texts),
        padding="max_length" if pad_to_max else True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    input_ids = enc["input_ids"].long()
    special = torch.tensor(
        sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}), dtype=torch.long
    )
    word_ids = torch.tensor(
        [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(texts))], dtype=torch.long
    ).reshape(input_ids.shape)
    word_ids[torch.isin(input_ids, special)] = -1
    return {"input_ids": input_ids, "attention_mask": enc["attention_mask"].long(), "word_ids": word_ids}
