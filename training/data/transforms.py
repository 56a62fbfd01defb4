"""Image transforms of the ALBEF recipe that keep boxes consistent, deterministic given a ``random.Random``.

Training: random resized crop (scale ``(0.5, 1.0)``, aspect ``(3/4, 4/3)``, bicubic, to a square side), an
optional horizontal flip. Evaluation: a plain bicubic resize to the square side. ALBEF's RandAugment is not
applied. The result is a uint8 tensor [3, H, W] (``to_pixels``): the model normalises it on its own device
(``training.models.vlm.normalise_images``), which keeps the workers' batches a quarter of the size of float ones.

Decoding: the crop is drawn from the size in the image header, before any pixel is decoded. When the crop is
at least twice the output side in both directions, a JPEG is decoded at 1/2, 1/4 or 1/8 scale (Pillow's
``draft``: libjpeg scales in the DCT) to the smallest size that still leaves the crop at least the output side;
the crop rectangle is mapped to the reduced image by the scale Pillow reports, so the boxes (normalised, of the
whole image) stay where they were. ``ImageTransform(draft=False)`` always decodes at full size.

Boxes are normalised ``x, y, w, h`` of the image they belong to. After a crop a box is clipped to the crop and
re-expressed in the crop's frame; a box whose visible part is less than ``min_visible`` (half, as X-VLM) of
its area is dropped (``None``).

Flip policy (``DataConfig.flip``): a mirrored picture swaps left and right, so a flip is only correct when the
text follows it. Caption batches flip with the words ``left``/``right`` swapped in the caption
(``swap_left_right``: "the dog to the left of the man" becomes "... to the right of ..."); VSG, MRC and entity
batches do not flip by default, because their relations are the spatial supervision the method is about (MRC
targets are relation ids, which a word swap cannot follow). A VSG or entity batch may enable the flip: its
texts then get the same word swap.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

Box = tuple[float, float, float, float]

_LEFT_RIGHT = re.compile(r"\b(left|right)(most|ward|wards|-hand|hand)?\b", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """The text with the whole words left/right (and leftmost, right-hand, ...) swapped, case kept."""

    def swap(m: re.Match) -> str:
        word = m.group(1)
        other = "right" if word.lower() == "left" else "left"
        if word.isupper():
            other = other.upper()
        elif word[0].isupper():
            other = other.capitalize()
        return other + (m.group(2) or "")

    return _LEFT_RIGHT.sub(swap, text)


@dataclass(frozen=True)
class Crop:
    """A crop rectangle in pixels of the source image (left, top, width, height), and whether it flips."""

    left: int
    top: int
    width: int
    height: int
    flip: bool = False


def _uniform(rng: random.Random, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


def sample_crop(
    width: int,
    height: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    rng: random.Random | None = None,
) -> Crop:
    """A random crop of area fraction in ``scale``, aspect log-uniform in ``ratio`` (as RandomResizedCrop); every
    draw comes from ``rng`` (a fresh, unseeded one when None: never the global random state)."""
    rng = rng if rng is not None else random.Random()
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(rng, *scale)
        aspect = math.exp(_uniform(rng, *log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randrange(height - h + 1)
            left = rng.randrange(width - w + 1)
            return Crop(left, top, w, h)
    # fallback: the central crop of the aspect closest to the allowed range
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return Crop((width - w) // 2, (height - h) // 2, w, h)


def crop_box(
    box: Sequence[float], crop: Crop, width: int, height: int, min_visible: float = 0.5
) -> Box | None:
    """A normalised box of a ``width`` x ``height`` image in the crop's normalised frame, or None if less than
    ``min_visible`` of it is inside the crop."""
    x, y, w, h = (float(v) for v in box)
    x0, y0, x1, y1 = x * width, y * height, (x + w) * width, (y + h) * height
    area = (x1 - x0) * (y1 - y0)
    cx0, cy0 = max(x0, crop.left), max(y0, crop.top)
    cx1, cy1 = min(x1, crop.left + crop.width), min(y1, crop.top + crop.height)
    if area <= 0 or cx1 <= cx0 or cy1 <= cy0 or (cx1 - cx0) * (cy1 - cy0) < min_visible * area:
        return None
    nx, ny = (cx0 - crop.left) / crop.width, (cy0 - crop.top) / crop.height
    nw, nh = (cx1 - cx0) / crop.width, (cy1 - cy0) / crop.height
    if crop.flip:
        nx = 1.0 - nx - nw
    return (_unit(nx), _unit(ny), _unit(nw), _unit(nh))


def _unit(v: float) -> float:
    return min(1.0, max(0.0, v))


def to_pixels(image: Image.Image) -> torch.Tensor:
    """An image as a contiguous uint8 tensor [3, H, W] (RGB)."""
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    width, height = rgb.size
    # channel planes straight from Pillow's packers (one band each, no intermediate band images): no strided
    # transposition (slow, and slower still when the process has several threads and the cores are busy)
    planes = bytearray().join(rgb.tobytes("raw", band) for band in "RGB")
    return torch.frombuffer(planes, dtype=torch.uint8).view(3, height, width)


def to_image(pixels: torch.Tensor) -> Image.Image:
    """A uint8 tensor [3, H, W] back as an RGB PIL image (for checks and pictures)."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"pixels must be uint8, not {pixels.dtype}")
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB")


def draft_scale(image: Image.Image, crop: Crop, size: int) -> float:
    """Decode ``image`` (not loaded yet) at a reduced scale when ``crop`` allows it (see the module docstring);
    returns the scale from source pixels to the pixels that will be decoded (1.0: full size)."""
    width, height = image.size
    need = (math.ceil(width * size / crop.width), math.ceil(height * size / crop.height))
    if 2 * need[0] > width or 2 * need[1] > height:
        return 1.0
    drafted = image.draft("RGB", need)
    if drafted is None:  # not a JPEG, or already loaded
        return 1.0
    return drafted[1][2] / width


@dataclass(frozen=True)
class ImageTransform:
    """Crop (training), resize and flip an image to uint8 pixels, and its boxes; see the module docstring."""

    size: int = 224
    train: bool = True
    flip: bool = False
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    min_visible: float = 0.5
    draft: bool = True

    def sample(self, width: int, height: int, rng: random.Random | None = None) -> Crop:
        """The random crop and flip for an image of this size (the whole image when not training)."""
        if not self.train:
            return Crop(0, 0, width, height)
        rng = rng if rng is not None else random.Random()
        crop = sample_crop(width, height, self.scale, self.ratio, rng)
        flip = self.flip and rng.random() < 0.5
        return Crop(crop.left, crop.top, crop.width, crop.height, flip)

    def apply(
        self, image: Image.Image, crop: Crop, boxes: Sequence[Sequence[float]] = ()
    ) -> tuple[torch.Tensor, list[Box | None]]:
        """The uint8 pixels [3, size, size] and the boxes (None where dropped) under ``crop``; an image not
        loaded yet is decoded here, in place (at a reduced scale when the crop allows, see the module docstring)."""
        width, height = image.size
        out_boxes = [crop_box(b, crop, width, height, self.min_visible) for b in boxes]
        scale = draft_scale(image, crop, self.size) if self.draft else 1.0
        box = (
            crop.left * scale,
            crop.top * scale,
            (crop.left + crop.width) * scale,
            (crop.top + crop.height) * scale,
        )
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        out = rgb.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        if crop.flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_pixels(out), out_boxes

    def __call__(
        self,
        image: Image.Image,
        boxes: Sequence[Sequence[float]] = (),
        rng: random.Random | None = None,
    ) -> tuple[torch.Tensor, list[Box | None], bool]:
        """The transformed image, its boxes (None where dropped) and whether it was mirrored."""
        crop = self.sample(*image.size, rng=rng)
        tensor, out = self.apply(image, crop, boxes)
        return tensor, out, crop.flip
