"""Every image mode Pillow can open is decoded to the right 8-bit RGB pixel (sngan.data.files.to_rgb via _decode)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sngan.data.files import _decode, folder_transform


def grey16(value: int) -> Image.Image:
    return Image.fromarray(np.full((4, 4), value, dtype=np.uint16))  # mode I;16


def palette_with_transparency() -> Image.Image:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    img.info["transparency"] = 1  # blue is the transparent colour
    return img


def one_bit() -> Image.Image:
    img = Image.new("1", (4, 4), 0)
    img.putpixel((0, 0), 1)
    return img


CASES = {  # name: (image, file suffix, expected RGB of pixel (0, 0))
    "I;16 grey 16-bit PNG": (lambda: grey16(32896), ".png", (128, 128, 128)),
    "I;16 white": (lambda: grey16(65535), ".png", (255, 255, 255)),
    # full scale onto full scale: 65407 * 255 / 65535 = 254.502 -> 255 by hand (over 65536 it would be 254.498 -> 254)
    "I;16 65407": (lambda: grey16(65407), ".png", (255, 255, 255)),
    "I 32-bit TIFF": (lambda: Image.fromarray(np.full((4, 4), 16448, dtype=np.int32)), ".tif",
                      (64, 64, 64)),
    "F float TIFF": (lambda: Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)), ".tif",
                     (128, 128, 128)),
    "CMYK TIFF": (lambda: Image.new("CMYK", (4, 4), (0, 255, 255, 0)), ".tif", (255, 0, 0)),
    "CMYK JPEG": (lambda: Image.new("CMYK", (4, 4), (0, 255, 255, 0)), ".jpg", (255, 0, 0)),
    "P with transparency": (palette_with_transparency, ".png", (255, 255, 255)),
    "P opaque": (lambda: Image.new("RGB", (4, 4), (0, 0, 255)).quantize(4), ".png", (0, 0, 255)),
    "LA half transparent": (lambda: Image.new("LA", (4, 4), (0, 128)), ".png", (127, 127, 127)),
    "L": (lambda: Image.new("L", (4, 4), 77), ".png", (77, 77, 77)),
    "RGBA transparent": (lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 0)), ".png", (255, 255, 255)),
    "RGBA opaque": (lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 255)), ".png", (10, 20, 30)),
    "1 bit": (one_bit, ".png", (255, 255, 255)),
    "RGB": (lambda: Image.new("RGB", (4, 4), (1, 2, 3)), ".png", (1, 2, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mode_decodes_to_the_expected_rgb_pixel(tmp_path: Path, case: str):
    make, suffix, expected = CASES[case]
    path = tmp_path / f"image{suffix}"
    make().save(path)
    out = _decode(path, lambda img, resolution: np.asarray(img), 4)
    assert isinstance(out, np.ndarray), out
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    tolerance = 2 if suffix == ".jpg" else 0  # JPEG is lossy even for a flat colour
    assert np.abs(out[0, 0].astype(int) - expected).max() <= tolerance, (case, out[0, 0], Image.open(path).mode)


def test_a_16_bit_png_is_not_packed_as_white(tmp_path: Path):
    path = tmp_path / "dark.png"
    grey16(4096).save(path)  # 1/16 of full scale
    out = _decode(path, folder_transform, 4)
    assert Image.open(path).mode.startswith("I") and int(out.max()) == 16
