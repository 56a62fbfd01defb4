"""The image stage on real JPEG files: pass-through, downscale with boxes' scale, and each reject reason."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from sgverbalise.images import (
    ImageChangedError,
    ImageConfig,
    ImageError,
    ImageRef,
    candidate_urls,
    prepare_image,
    read_first,
)


def jpeg(width=400, height=200, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    im = Image.new("RGB", (width, height), colour)
    im.paste((0, 0, 255), (0, 0, width // 2, height // 2))
    im.save(out, format="JPEG", quality=92)
    return out.getvalue()


def test_pass_through_keeps_the_original_bytes():
    data = jpeg()
    loaded = prepare_image(data, "x.jpg", ImageConfig())
    assert loaded.data == data and (loaded.width, loaded.height, loaded.scale) == (400, 200, 1.0)


def test_image_ref_reads_back_the_checked_file_and_refuses_a_changed_one(tmp_path):
    path = tmp_path / "1.jpg"
    path.write_bytes(data := jpeg())
    loaded = prepare_image(data, str(path), ImageConfig())
    ref = ImageRef.of(loaded.url, loaded.data)
    assert loaded.passed_through and ref.nbytes == len(data) and ref.load() == data
    path.write_bytes(jpeg(colour=(0, 200, 0)))  # another picture under the same name
    with pytest.raises(ImageChangedError, match="changed while the job ran"):
        ref.load()
    assert not prepare_image(data, "x.jpg", ImageConfig(max_side=100)).passed_through


def test_downscale_to_max_side_and_report_the_scale():
    loaded = prepare_image(jpeg(400, 200), "x.jpg", ImageConfig(max_side=100))
    im = Image.open(io.BytesIO(loaded.data))
    assert im.format == "JPEG" and im.size == (100, 50) == (loaded.width, loaded.height)
    assert loaded.scale == 0.25
    assert im.getpixel((10, 10))[2] > 200 and im.getpixel((90, 40))[0] > 150  # content kept where it was


def test_png_is_reencoded_as_jpeg():
    out = io.BytesIO()
    Image.new("RGB", (30, 20), (0, 255, 0)).save(out, format="PNG")
    loaded = prepare_image(out.getvalue(), "x.png", ImageConfig())
    assert Image.open(io.BytesIO(loaded.data)).format == "JPEG" and loaded.scale == 1.0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not an image at all", "image_unreadable"),  # detail has no object address (deterministic)
        (jpeg()[:400], "image_unreadable"),  # truncated JPEG
    ],
)
def test_bad_bytes_are_rejected_with_a_reason(data, reason):
    with pytest.raises(ImageError) as info:
        prepare_image(data, "bad.jpg", ImageConfig())
    assert info.value.reason == reason
    assert " at 0x" not in str(info.value)


def test_decompression_bomb_is_rejected_before_decoding():
    with pytest.raises(ImageError) as info:
        prepare_image(jpeg(400, 200), "big.jpg", ImageConfig(max_pixels=10_000))
    assert info.value.reason == "image_too_large"


def test_images_are_found_under_any_root(tmp_path):
    (tmp_path / "a" / "VG_100K_2").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "7.jpg").write_bytes(b"seven")
    urls = candidate_urls([str(tmp_path / "a"), str(tmp_path / "b")], "VG_100K_2/7.jpg")
    assert read_first(urls) == (str(tmp_path / "b" / "7.jpg"), b"seven")
    with pytest.raises(ImageError) as info:
        read_first(candidate_urls([str(tmp_path / "a")], "VG_100K/8.jpg"))
    assert info.value.reason == "image_missing"
