"""Tokenizers: load a local folder or train a BERT-style WordPiece tokenizer on shard text; text collation.

A trained tokenizer is saved as a transformers ``BertTokenizerFast`` folder (``tokenizer.json`` +
``tokenizer_config.json``) that ``load_tokenizer`` (``AutoTokenizer``) reads back: BERT normalisation (lower
case, accents stripped), BERT pre-tokenisation (whitespace and punctuation), WordPiece with ``##``
continuations, ``[CLS] text [SEP]`` post-processing, special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]``
(ids 0-4).

Training is deterministic: the same texts and parameters give byte-identical files in any process. The trainer
of ``tokenizers`` numbers the ``##`` continuation pieces in the order of a randomly seeded hash map, and breaks
ties between equally frequent merges by those numbers, so on its own it learns other tokens from run to run.
``train_tokenizer`` therefore counts the words itself (with the tokenizer's own normaliser and pre-tokeniser),
gives every initial piece a fixed id before the merges (the continuation pieces are handed to the trainer up
front, in code-point order) and feeds it the counted words in sorted order; the learned vocabulary is then
renumbered canonically: special tokens, single characters, single-character continuations, then the learned
pieces in the order the trainer merged them.

The text a tokenizer is trained on (``shard_texts``): web shards' ``.txt`` captions; scene-graph samples' VSG
strings split at their ``[SEP]`` separators, entity names and attributes, triplets' subjects, predicates and
objects.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

from sgverbalise.shards import read_shard
from sgverbalise.training.data.sources import expand_urls

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
        if not isinstance(meta, dict):
            meta = {}
        for vsg in meta.get("vsg", []):
            yield from (part.strip() for part in vsg.split(VSG_SEPARATOR) if part.strip())
        for entity in meta.get("entities", []):
            yield " ".join([*entity.get("attributes", []), entity["name"]])
        for t in meta.get("triplets", []):
            yield f"{t['subject']} {t['predicate']} {t['object']}"
        if "vsg" in meta:
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


CONTINUATION = "##"
_REPEAT = 1024  # a counted word goes back to the trainer as texts of at most this many copies


def word_counts(texts: Iterable[str], normalizer: Any, pre_tokenizer: Any) -> Counter:
    """How often each word (normalised, pre-tokenised) occurs in ``texts``."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def _repeated(counts: Counter) -> Iterator[str]:
    """The counted words as whitespace-separated texts again, word by word in sorted order."""
    for word in sorted(counts):
        left = counts[word]
        while left > 0:
            take = min(left, _REPEAT)
            yield " ".join([word] * take)
            left -= take


def _canonical_order(vocab: dict[str, int]) -> list[str]:
    """Special tokens, single characters, single-character continuations, then the rest by trainer id."""

    def rank(token: str) -> tuple[int, int]:
        if len(token) == 1:
            return 0, vocab[token]
        if token.startswith(CONTINUATION) and len(token) == len(CONTINUATION) + 1:
            return 1, vocab[token]
        return 2, vocab[token]

    learned = sorted((t for t in vocab if t not in SPECIAL_TOKENS), key=rank)
    return [*SPECIAL_TOKENS, *learned]


def learn_vocab(counts: Counter, vocab_size: int, min_frequency: int) -> list[str]:
    """The WordPiece vocabulary (tokens in canonical id order) learned from word counts, deterministically."""
    continuing = sorted({char for word in counts for char in word[1:]})
    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # the words are already normalised and split
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *(CONTINUATION + char for char in continuing)],
        continuing_subword_prefix=CONTINUATION,
    )
    core.train_from_iterator(_repeated(counts), trainer)
    return _canonical_order(core.get_vocab(with_added_tokens=False))


def train_tokenizer(
    texts: Iterable[str],
    out: str | Path | None = None,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
    model_max_length: int = 512,
) -> PreTrainedTokenizerBase:
    """Train a WordPiece tokenizer on ``texts`` (deterministically, see the module docstring); saved as a
    BertTokenizerFast folder when ``out`` is given."""
    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokens = learn_vocab(word_counts(texts, normalizer, pre_tokenizer), vocab_size, min_frequency)
    core = Tokenizer(
        models.WordPiece(
            {token: i for i, token in enumerate(tokens)},
            unk_token="[UNK]",
            max_input_chars_per_word=100,
            continuing_subword_prefix=CONTINUATION,
        )
    )
    core.normalizer = normalizer
    core.pre_tokenizer = pre_tokenizer
    cls_id, sep_id = tokens.index("[CLS]"), tokens.index("[SEP]")
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    core.decoder = decoders.WordPiece(prefix=CONTINUATION)
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


class TextEncoder:
    """``encode_texts`` for one tokenizer and length, with the fast tokenizer's backend configured once (truncation
    and padding as the transformers call sets them) and the whole batch encoded in one ``encode_batch`` call."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, pad_to_max: bool = False) -> None:
        self.tokenizer, self.max_length, self.pad_to_max = tokenizer, max_length, pad_to_max
        self.backend: Tokenizer | None = None
        if getattr(tokenizer, "is_fast", False):
            backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())  # a copy: the caller's stays as is
            backend.enable_truncation(
                max_length, stride=0, strategy="longest_first", direction=tokenizer.truncation_side
            )
            backend.enable_padding(
                direction=tokenizer.padding_side,
                pad_id=tokenizer.pad_token_id,
                pad_type_id=tokenizer.pad_token_type_id,
                pad_token=tokenizer.pad_token,
                length=max_length if pad_to_max else None,
            )
            self.backend = backend
        self.special = np.array(sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}), dtype=np.int64)

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and ``word_ids`` of ``texts`` (see ``encode_texts``)."""
        if not texts:
            empty = torch.zeros((0, 0), dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone(), "word_ids": empty.clone()}
        if self.backend is None:
            enc = self.tokenizer(
                list(texts),
                padding="max_length" if self.pad_to_max else True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            ids, mask = enc["input_ids"], enc["attention_mask"]
            words = [enc.word_ids(i) for i in range(len(texts))]
        else:
            encodings = self.backend.encode_batch(list(texts))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            words = [e.word_ids for e in encodings]
        ids, mask = ids.astype(np.int64).reshape(len(texts), -1), mask.astype(np.int64).reshape(len(texts), -1)
        word_ids = np.array([[-1 if w is None else w for w in row] for row in words], dtype=np.int64)
        word_ids = word_ids.reshape(ids.shape)
        word_ids[np.isin(ids, self.special)] = -1
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "word_ids": torch.from_numpy(word_ids),
        }


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, pad_to_max: bool = False
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``word_ids`` (-1 on special and pad tokens, not on [UNK]), long
    tensors [B, L]; L is the longest text (or ``max_length`` with ``pad_to_max``), at most ``max_length``.
    (Streams build a ``TextEncoder`` once and reuse it.)"""
    return TextEncoder(tokenizer, max_length, pad_to_max)(texts)
