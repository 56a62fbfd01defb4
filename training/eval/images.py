"""Benchmark images under a local folder or any fsspec URL: resolve references, load as RGB, find missing."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable

from PIL import Image

from sgverbalise.storage import url_fs

from .benchmarks import ImageRef

log = logging.getLogger(__name__)


class ImageStore:
    """The images of one suite under ``root``; the folder is listed once, references resolve in memory."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.path = url_fs(root)
        self._index: set[str] | None = None

    def index(self) -> set[str]:
        """Relative paths of every file under the root (empty when the root does not exist)."""
        if self._index is None:
            base = self.path.rstrip("/")
            found: set[str] = set()
            if self.fs.exists(base):
                for path in self.fs.find(base):
                    found.add(posixpath.relpath(path, base) if path.startswith(base) else path)
            self._index = found
        return self._index

    def resolve(self, ref: ImageRef) -> str | None:
        """The first candidate path of ``ref`` that exists, or None."""
        index = self.index()
        return next((c for c in ref if c in index), None)

    def load(self, relpath: str) -> Image.Image | None:
        """The image as RGB, or None when it cannot be decoded (logged)."""
        try:
            with self.fs.open(posixpath.join(self.path.rstrip("/"), relpath), "rb") as fh:
                image = Image.open(fh)
                image.load()
            return image.convert("RGB")
        except (OSError, ValueError) as err:
            log.warning("cannot read image %s under %s: %s", relpath, self.root, err)
            return None


def missing_refs(store: ImageStore, refs: Iterable[ImageRef]) -> list[ImageRef]:
    """The distinct references that resolve to no file, in first-seen order."""
    seen: set[ImageRef] = set()
    out: list[ImageRef] = []
    for ref in refs:
        if ref not in seen:
            seen.add(ref)
            if store.resolve(ref) is None:
                out.append(ref)
    return out
