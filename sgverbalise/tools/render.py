"""``sgv render``: a sample's image with every box drawn and labelled, arrows from subject to object labelled
with the predicate, and the VSG caption (or the .txt caption) underneath; contact sheets of many samples.

Geometry (what tests rely on): the image is drawn at the top-left corner of the canvas, scaled by
``size / max(width, height)`` of the sample's pixel frame (the .json's width/height, else the image's); a
box ``x, y, w, h`` becomes the outline ``round(x*s), round(y*s)`` .. ``round((x+w)*s) - 1,
round((y+h)*s) - 1``, ``line_width(size)`` pixels wide inwards, in ``PALETTE[i % len(PALETTE)]`` for the
i-th box."""

from __future__ import annotations

import io
import math
import textwrap
from functools import cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

# Saturated colours, far from the greys of the caption band and distinct from each other.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
)
BACKGROUND = (128, 128, 128)  # canvas for samples without an image
BAND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)


def line_width(size: int) -> int:
    """Outline width in pixels for a rendering ``size`` pixels on its long side."""
    return max(2, round(size / 200))


@cache
def font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``px`` pixels (the bitmap default where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def sample_boxes(sample: dict) -> list[dict]:
    """Boxes to draw: every entity (label: attributes and name), then triplet boxes of objects not among the
    entities; each ``{id, label, box, colour}``."""
    boxes: list[dict] = []
    seen: set[str] = set()
    for e in sample.get("entities") or []:
        box = e.get("box")
        if not (isinstance(box, list) and len(box) == 4):
            continue
        attributes = [a for a in e.get("attributes") or [] if a and a not in str(e.get("name"))]
        label = " ".join([*attributes, str(e.get("name"))])
        boxes.append({"id": str(e.get("object_id")), "label": label, "box": box})
        seen.add(str(e.get("object_id")))
    for t in sample.get("triplets") or []:
        for role in ("subject", "object"):
            oid, box = str(t.get(f"{role}_id")), t.get(f"{role}_box")
            if oid not in seen and isinstance(box, list) and len(box) == 4:
                boxes.append({"id": oid, "label": str(t.get(role)), "box": box})
                seen.add(oid)
    for n, b in enumerate(boxes):
        b["colour"] = PALETTE[n % len(PALETTE)]
    return boxes


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = fill
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    fill: tuple[int, int, int],
    fnt: Any,
    outline: tuple[int, int, int] | None = None,
    ink: tuple[int, int, int] | None = None,
) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    pad = 2
    x, y = xy
    draw.rectangle([x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad], fill=fill, outline=outline)
    draw.text((x + pad - left, y + pad - top), text, font=fnt, fill=ink or _text_colour(fill))


def _label_size(draw: ImageDraw.ImageDraw, text: str, fnt: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left + 4, bottom - top + 4


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _exit(centre: tuple[float, float], half: tuple[float, float], d: tuple[float, float]) -> float:
    """Fraction of ``d`` after which a ray from a box centre leaves the box."""
    ts = [h / abs(v) for h, v in zip(half, d, strict=True) if v]
    return min(ts) if ts else math.inf


def _arrow(
    draw: ImageDraw.ImageDraw, a: list[float], b: list[float], colour: tuple[int, int, int], width: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """An arrow from box ``a`` to box ``b`` (pixel boxes x0, y0, x1, y1), border to border when the boxes are
    apart, centre to centre otherwise; returns its start and end."""
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    d = (cb[0] - ca[0], cb[1] - ca[1])
    if d == (0.0, 0.0):
        return ca, ca
    t_start = _exit(ca, ((a[2] - a[0]) / 2, (a[3] - a[1]) / 2), d)
    t_end = 1 - _exit(cb, ((b[2] - b[0]) / 2, (b[3] - b[1]) / 2), d)
    if not t_start < t_end:
        t_start, t_end = 0.0, 1.0
    start = (ca[0] + d[0] * t_start, ca[1] + d[1] * t_start)
    end = (ca[0] + d[0] * t_end, ca[1] + d[1] * t_end)
    draw.line([start, end], fill=colour, width=width)
    length = math.hypot(*d)
    ux, uy = d[0] / length, d[1] / length
    head = 4 * width + 4
    base = (end[0] - ux * head, end[1] - uy * head)
    draw.polygon(
        [
            end,
            (base[0] - uy * head / 2, base[1] + ux * head / 2),
            (base[0] + uy * head / 2, base[1] - ux * head / 2),
        ],
        fill=colour,
    )
    return start, end


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt: Any, width: int) -> list[str]:
    avg = max(1.0, draw.textlength("abcdefghijklmnopqrstuvwxyz", font=fnt) / 26)
    lines = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, max(8, int(width / avg))) or [""]
    return lines


def render_sample(
    sample: dict | None,
    image: bytes | None,
    caption: str | None = None,
    *,
    size: int = 512,
    title: str | None = None,
) -> Image.Image:
    """The rendering of one sample (see the module docstring for the geometry); ``caption`` is used when the
    sample has no VSG caption (other WebDataset shards' .txt)."""
    sample = sample if isinstance(sample, dict) else {}
    picture = None
    if image is not None:
        with Image.open(io.BytesIO(image)) as opened:
            picture = opened.convert("RGB")
    frame_w = sample.get("width") if isinstance(sample.get("width"), int) else None
    frame_h = sample.get("height") if isinstance(sample.get("height"), int) else None
    if frame_w is None or frame_h is None:
        if picture is None:
            raise ValueError("nothing to render: no image and no width/height in the sample")
        frame_w, frame_h = picture.size
    scale = size / max(frame_w, frame_h)
    canvas_w, canvas_h = max(1, round(frame_w * scale)), max(1, round(frame_h * scale))
    base = (
        picture.resize((canvas_w, canvas_h), Image.Resampling.BICUBIC)
        if picture is not None
        else Image.new("RGB", (canvas_w, canvas_h), BACKGROUND)
    )
    small, fnt_px = line_width(size), max(10, round(size / 38))
    fnt = font(fnt_px)
    draw = ImageDraw.Draw(base)
    boxes = sample_boxes(sample)
    pixel = {}
    for b in boxes:
        x, y, w, h = (float(v) for v in b["box"])
        px = [round(x * scale), round(y * scale), round((x + w) * scale) - 1, round((y + h) * scale) - 1]
        pixel[b["id"]] = px
        draw.rectangle(px, outline=b["colour"], width=small)
    colour_of = {b["id"]: b["colour"] for b in boxes}
    arrows = []
    for t in sample.get("triplets") or []:
        a, b = pixel.get(str(t.get("subject_id"))), pixel.get(str(t.get("object_id")))
        if a is None or b is None:
            continue
        colour = colour_of[str(t.get("subject_id"))]
        arrows.append((*_arrow(draw, a, b, colour, max(1, small - 1)), str(t.get("predicate")), colour))
    # labels: box names first (they keep their place), then predicates where they overlap the fewest labels
    placed: list[tuple[float, float, float, float]] = []
    box_labels = []
    for b in boxes:
        x0, y0 = pixel[b["id"]][:2]
        w, h = _label_size(draw, b["label"], fnt)
        y = y0 - h if y0 - h >= 0 else y0 + small
        x0 = max(0, min(x0, canvas_w - w))  # keep the label on the picture
        placed.append((x0, y, x0 + w, y + h))
        box_labels.append(((x0, y), b["label"], b["colour"]))
    for start, end, text, colour in arrows:
        w, h = _label_size(draw, text, fnt)
        spots = [
            (start[0] + (end[0] - start[0]) * f - w / 2, start[1] + (end[1] - start[1]) * f - h / 2)
            for f in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8)
        ]
        spots = [(max(0, min(x, canvas_w - w)), max(0, min(y, canvas_h - h))) for x, y in spots]
        x, y = min(spots, key=lambda p: sum(_overlap((p[0], p[1], p[0] + w, p[1] + h), r) for r in placed))
        placed.append((x, y, x + w, y + h))
        _label(draw, (x, y), text, (255, 255, 255), fnt, outline=colour, ink=INK)
    for xy, text, colour in box_labels:
        _label(draw, xy, text, colour, fnt)
    # the caption band
    captions = [c for c in sample.get("vsg") or [] if isinstance(c, str)] or ([caption] if caption else [])
    band_w = canvas_w
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if title:
        lines.append((title, MUTED))
    for n, text in enumerate(captions):
        prefix = (
            f"VSG {n + 1}: "
            if sample.get("vsg") and len(captions) > 1
            else ("VSG: " if sample.get("vsg") else "")
        )
        lines += [(line, INK) for line in _wrap(probe, prefix + text, fnt, band_w - 12)]
    line_h = fnt_px + 4
    band_h = 8 + line_h * len(lines) if lines else 0
    out = Image.new("RGB", (band_w, canvas_h + band_h), BAND)
    out.paste(base, (0, 0))
    draw = ImageDraw.Draw(out)
    for n, (line, ink) in enumerate(lines):
        draw.text((6, canvas_h + 4 + n * line_h), line, font=fnt, fill=ink)
    return out


def render_members(key: str, members: dict[str, bytes], *, size: int = 512) -> Image.Image:
    """Render a stored sample (its .json, first image member and .txt), titled with its key."""
    import json

    from sgverbalise.tools.scan import ext_kind

    sample = None
    if "json" in members:
        try:
            sample = json.loads(members["json"])
        except ValueError:
            sample = None
    image = next((data for ext, data in sorted(members.items()) if ext_kind(ext) == "image"), None)
    caption = members["txt"].decode("utf-8", "replace") if "txt" in members else None
    n = len(sample.get("triplets") or []) if isinstance(sample, dict) else 0
    title = key + (f"  ({n} triplets)" if n else "")
    return render_sample(sample, image, caption, size=size, title=title)


def contact_sheet(tiles: list[Image.Image], columns: int | None = None, gap: int = 6) -> Image.Image:
    """Tiles in a grid (``columns`` defaults to about the square root of their number), on white."""
    if not tiles:
        raise ValueError("no tiles")
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    cell_w, cell_h = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (columns * cell_w + (columns + 1) * gap, rows * cell_h + (rows + 1) * gap), BAND)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, columns)
        sheet.paste(tile, (gap + c * (cell_w + gap), gap + r * (cell_h + gap)))
    return sheet
