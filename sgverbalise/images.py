"""The image stage: find an image under its roots, check it decodes, optionally downscale it.

By default the original JPEG bytes pass through untouched (only the header and a cheap 1/8-scale draft decode are
read, to catch truncated or corrupt files). With ``max_side`` the image is downscaled with Pillow's ``draft()``
(JPEG DCT scaling, fast) and a final resample, then re-encoded; the caller rescales every box by ``scale``.
Pillow's decompression-bomb guard stays on: an image over ``Image.MAX_IMAGE_PIXELS`` is rejected.

An image passed through can travel between the steps of a job as an ``ImageRef`` (where it is, its size and
CRC-32) instead of its bytes; the step that writes it reads it again and checks it is the same file.
"""

from __future__ import annotations

import io
import posixpath
import re
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from sgverbalise.storage import read_bytes, redact

JPEG_FORMATS = {"JPEG", "MPO"}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True)
class ImageConfig:
    """How images are taken into shards."""

    max_side: int | None = None  # downscale so that the longer side is at most this; None: pass through
    quality: int = 90  # JPEG quality when re-encoding
    max_pixels: int = 89_478_485  # Pillow's default bomb threshold (about 0.25 GiB of RGBA)


@dataclass(frozen=True)
class LoadedImage:
    data: bytes  # JPEG bytes to write
    width: int
    height: int
    scale: float  # factor from the source image's pixels to these (1.0 when passed through)
    url: str
    passed_through: bool = False  # ``data`` is the source's bytes, untouched


@dataclass(frozen=True)
class ImageRef:
    """An image passed through, by reference: read again (and checked unchanged) where it is written."""

    url: str
    nbytes: int
    crc32: int  # catches a file changed between the steps (not a security check)

    @classmethod
    def of(cls, url: str, data: bytes) -> ImageRef:
        return cls(url, len(data), zlib.crc32(data))

    def load(self) -> bytes:
        """The image's bytes; raises ImageChangedError when the file is no longer the one that was checked."""
        data = read_bytes(self.url)
        if len(data) != self.nbytes or zlib.crc32(data) != self.crc32:
            raise ImageChangedError(f"{redact(self.url)} changed while the job ran ({self.nbytes} bytes with "
                                    f"CRC-32 {self.crc32:08x} when checked; {len(data)} bytes, CRC-32 "
                                    f"{zlib.crc32(data):08x} now)")
        return data


class ImageChangedError(RuntimeError):
    """An input image differs between the step that checked it and the step that writes it."""


class ImageError(Exception):
    """An image that cannot be used; ``reason`` is one of the reject reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def candidate_urls(roots: Sequence[str], image_path: str) -> list[str]:
    """Where an image may be: ``root/image_path`` (e.g. ``VG_100K_2/1.jpg``) or ``root/<file name>``."""
    name = posixpath.basename(image_path)
    urls: list[str] = []
    for root in roots:
        root = root.rstrip("/")
        for rel in (image_path, name):
            url = f"{root}/{rel}"
            if url not in urls:
                urls.append(url)
    return urls


def read_first(urls: Sequence[str]) -> tuple[str, bytes]:
    """The bytes of the first of ``urls`` that exists."""
    for url in urls:
        try:
            return url, read_bytes(url)
        except (FileNotFoundError, IsADirectoryError):
            continue
    raise ImageError("image_missing", f"none of {[redact(u) for u in list(urls)[:4]]} exists")


def prepare_image(data: bytes, url: str, cfg: ImageConfig) -> LoadedImage:
    """Check that ``data`` is a usable image and pass it through or downscale it (see the module docstring)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only; Pillow's own bomb guard applies
            width, height = im.size
            if width * height > cfg.max_pixels:
                raise Image.DecompressionBombError(f"{width}x{height} pixels is over {cfg.max_pixels}")
            target = target_size(width, height, cfg.max_side)
            if target is None and im.format in JPEG_FORMATS:
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                im.load()  # a cheap decode that still finds truncated or corrupt data
                return LoadedImage(data, width, height, 1.0, url, passed_through=True)
            if target is not None:
                im.draft("RGB", target)
            im = im.convert("RGB")
            if target is not None and im.size != target:
                im = im.resize(target, Image.Resampling.BICUBIC)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("image_too_large", f"{redact(url)}: {exc}") from None
    except Exception as exc:  # Pillow raises many types for bad data: all mean unreadable
        message = _ADDRESS.sub("", str(exc))  # "<_io.BytesIO object at 0x7f...>" would make rejects differ per run
        raise ImageError("image_unreadable", f"{redact(url)}: {type(exc).__name__}: {message}") from None
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=cfg.quality)
    scale = im.size[0] / width
    return LoadedImage(out.getvalue(), im.size[0], im.size[1], scale, url)


def target_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """The size an image is downscaled to (longer side ``max_side``), or None when it is kept."""
    if not max_side or max(width, height) <= max_side:
        return None
    ratio = max_side / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))
