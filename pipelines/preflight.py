"""Checks of a job's arguments before Beam starts: a missing input, an output path that is a file, an id list that
does not parse or an unknown Beam option is an ``InputError`` naming the option, not a traceback from a worker.

A check that cannot be made (a store that does not answer, no permission to look) is left to the job itself.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator

from sgverbalise.errors import InputError
from sgverbalise.pipelines.ingested import load_manifest
from sgverbalise.pipelines.options import BuildConfig, parse_beam_args
from sgverbalise.storage import redact, url_fs

log = logging.getLogger(__name__)
COCO_ID = re.compile(r"\d+")
FOLDERLESS = ("http://", "https://")  # stores whose URLs name files only
IMAGE_ID = re.compile(r"[^\s,;]+")  # one id a line: '123' or 'vg-123'; blanks or separators mean several


def check_job(cfg: BuildConfig, beam_argv: list[str]) -> None:
    """Everything about ``cfg`` and the Beam options that can be told without running the job."""
    parse_beam_args(beam_argv)
    check_inputs(inputs(cfg))
    if cfg.records:
        load_manifest(cfg.records)  # InputError when it is no finished ingest
    check_output("--out", cfg.out)
    check_id_list("--exclude-coco-ids", cfg.exclude_coco_ids, COCO_ID, "a COCO id (an integer)")
    check_id_list("--exclude-image-ids", cfg.exclude_image_ids, IMAGE_ID, "an image id ('123' or 'vg-123')")


def inputs(cfg: BuildConfig) -> Iterator[tuple[str, str]]:
    """(option, URL) of every input the job reads. Image roots are folders: on a store without folders (HTTP) they
    cannot be checked, only the images under them (which the job does, one reject each)."""
    yield from (("--vg", cfg.vg), ("--records", cfg.records), ("--relations", cfg.vocab.relations),
                ("--relation-aliases", cfg.relation_aliases),
                ("--object-aliases", cfg.object_aliases), ("--exclude-coco-ids", cfg.exclude_coco_ids),
                ("--exclude-image-ids", cfg.exclude_image_ids))
    yield from (("--gqa", url) for url in cfg.gqa)
    roots = [("--gqa-images", cfg.gqa_images)] + [("--vg-images", url) for url in cfg.vg_images]
    yield from ((option, url) for option, url in roots if url and not url.startswith(FOLDERLESS))


def ask(option: str, url: str, question: str) -> bool | None:
    """``fs.exists`` or ``fs.isfile`` (``question``) of ``url``; None when the store cannot tell (credentials,
    network): the job then reports what it finds."""
    try:
        fs, path = url_fs(url)
        return bool(getattr(fs, question)(path))
    except Exception:
        log.debug("preflight: cannot check %s %s", option, redact(url), exc_info=True)
        return None


def check_inputs(inputs: Iterable[tuple[str, str | None]]) -> None:
    """InputError naming the first (option, URL) whose URL is given and does not exist."""
    for option, url in inputs:
        if url and ask(option, url, "exists") is False:
            raise InputError(f"{option} {redact(url)}: no such file or folder")


def check_output(option: str, url: str) -> None:
    """The output is no file, and a local output's nearest existing folder is writable."""
    if ask(option, url, "isfile"):
        raise InputError(f"{option} {redact(url)} is a file; give a folder (or a prefix) for the output")
    if "://" in url or "::" in url:
        return
    parent = os.path.abspath(url)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"{option} {url}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {url}: {parent} is not writable")


def check_id_list(option: str, url: str | None, pattern: re.Pattern, what: str) -> None:
    """Each line of the id file (``#`` comments and blank lines aside) is one id that ``pattern`` matches."""
    if not url:
        return
    fs, path = url_fs(url)
    try:
        with fs.open(path, "rt", encoding="utf-8") as f:
            lines = list(f)
    except UnicodeDecodeError:
        raise InputError(f"{option} {redact(url)} is not a UTF-8 text file of ids, one a line") from None
    for number, line in enumerate(lines, 1):
        item = line.split("#", 1)[0].strip()
        if item and not pattern.fullmatch(item):
            raise InputError(f"{option} {redact(url)} line {number}: {item!r} is not {what}")
