"""Shape scenes drawn with Pillow, and their JPEG encoding (fixed settings: same pixels, same bytes)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

from .scenes import COLOURS, Scene

JPEG_QUALITY = 92


def render_scene(
    scene: Scene, size: int | None = None, *, noise_seed: int = 0, noise: int = 12
) -> Image.Image:
    """The scene drawn with Pillow on a light grey background with ``noise`` levels of seeded grain (RGB)."""
    n = scene.size
    grain = Image.frombytes("L", (n, n), random.Random(noise_seed).randbytes(n * n))
    grain = grain.point([236 - noise // 2 + v * noise // 256 for v in range(256)])
    image = Image.merge("RGB", (grain, grain, grain))
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.x, obj.y, obj.x2 - 1, obj.y2 - 1
        fill = COLOURS[obj.colour]
        if obj.shape in ("square", "rectangle"):
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "triangle":
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
        else:  # diamond
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    if size is not None and size != n:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image


def jpeg_bytes(image: Image.Image) -> bytes:
    """``image`` as a JPEG with fixed settings (same pixels, same bytes)."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buf.getvalue()


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Write ``image`` to ``path`` as ``jpeg_bytes`` encodes it (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(image))
