"""Pictures as model inputs (``mlp/data/images.py``): each form of one picture against the
input worked out by hand, the polarity rule, and files that cannot be read, as one error."""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from mlp.data import images
from mlp.data.images import image_input, pad_to_square, read_image
from mlp.errors import DataError, MissingExtra
from tests.helpers import peak_allocation


def stroke_pattern() -> np.ndarray:
    """A 14×28 picture, light strokes of three greys on a zero background (and border)."""
    pattern = np.zeros((14, 28), dtype=np.uint8)
    pattern[3:11, 4:6] = 255
    pattern[6, 6:20] = 128
    pattern[2:12, 21] = 40
    return pattern


def wide_picture() -> np.ndarray:
    """The pattern at twice its size (each pixel a 2×2 block): 28 rows × 56 columns."""
    return np.kron(stroke_pattern(), np.ones((2, 2), dtype=np.uint8))


def expected_input() -> np.ndarray:
    """By hand: halved by area averaging (a 2×2 block of one grey stays that grey) to 14×28,
    then padded to 28×28: 7 background rows, the pattern, 7 rows."""
    expected = np.zeros((28, 28), dtype=np.uint8)
    expected[7:21] = stroke_pattern()
    return expected.reshape(784)


def saved(tmp_path, name, pixels, **options):
    path = tmp_path / name
    Image.fromarray(pixels).save(path, **options)
    return path


@pytest.mark.parametrize(
    "name, pixels",
    [
        ("light-on-dark.png", wide_picture()),
        ("dark-on-light.png", 255 - wide_picture()),
        ("rgb.png", np.repeat(wide_picture()[..., None], 3, axis=2)),
        ("dark-on-light-rgb.png", 255 - np.repeat(wide_picture()[..., None], 3, axis=2)),
        ("sixteen-bit.png", wide_picture().astype(np.uint16) * 257),
    ],
)
def test_every_form_of_a_picture_gives_the_hand_computed_input(tmp_path, name, pixels):
    converted = read_image(saved(tmp_path, name, pixels))
    assert converted.dtype == np.uint8 and converted.shape == (784,)
    np.testing.assert_array_equal(converted, expected_input())


def test_dark_strokes_on_transparency_count_as_on_white(tmp_path):
    rgba = np.zeros((28, 56, 4), dtype=np.uint8)  # black everywhere, opaque where drawn
    rgba[..., 3] = wide_picture()
    np.testing.assert_array_equal(read_image(saved(tmp_path, "ink.png", rgba)), expected_input())


def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    stored = Image.fromarray(wide_picture()).transpose(Image.Transpose.ROTATE_90)  # 56×28
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to show"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=100)
    assert Image.open(path).size == (28, 56)  # stored tall
    error = np.abs(read_image(path).astype(int) - expected_input())
    assert error.mean() < 2, error.reshape(28, 28)  # JPEG's loss; a tall picture differs


@pytest.mark.parametrize("pixels", [wide_picture(), 255 - wide_picture()])
def test_jpeg_of_either_polarity_comes_close(tmp_path, pixels):
    converted = read_image(saved(tmp_path, "picture.jpg", pixels, quality=95)).astype(int)
    error = np.abs(converted - expected_input())
    assert error.mean() < 2 and error.max() < 64, error.reshape(28, 28)


@pytest.mark.parametrize("border, inverted", [(127, False), (128, True)])
def test_a_border_lighter_than_middle_grey_is_inverted(border, inverted):
    pixels = np.full((28, 28), border, dtype=np.uint8)  # no resize at 28×28
    pixels[10:18, 10:18] = 250
    expected = 255 - pixels if inverted else pixels
    np.testing.assert_array_equal(image_input(Image.fromarray(pixels)), expected.reshape(784))


def test_the_borders_median_decides_not_its_mean():
    """A stroke over nearly half the border (mean 150) leaves a dark background dark."""
    pixels = np.full((28, 28), 60, dtype=np.uint8)
    pixels[:, :12] = 255  # 50 of the ring's 108 pixels, 58 stay dark
    assert images.border(pixels).mean() > 127.5 and np.median(images.border(pixels)) == 60
    np.testing.assert_array_equal(image_input(Image.fromarray(pixels)), pixels.reshape(784))


def test_a_small_picture_is_enlarged_with_lanczos():
    small = np.zeros((14, 14), dtype=np.uint8)
    small[5:9, 5:9] = 255
    expected = np.asarray(Image.fromarray(small).resize((28, 28), Image.Resampling.LANCZOS))
    converted = image_input(Image.fromarray(small)).reshape(28, 28)
    np.testing.assert_array_equal(converted, expected)
    assert converted[:4].max() == 0 and converted[12:16, 12:16].min() > 200


def test_a_long_thin_strip_is_shrunk_before_it_is_padded():
    """30,000 × 1 pixels: a 30,000² square would take 900 MB; shrunk first, a 28 × 1 line."""
    strip = np.zeros((1, 30_000), dtype=np.uint8)
    strip[0, 10_000:20_000] = 255  # the middle third lit
    picture = Image.fromarray(strip)
    assert peak_allocation(lambda: image_input(picture)) < 5_000_000
    converted = image_input(picture).reshape(28, 28)
    line = converted[13]  # 27 rows of margin, the odd one below
    assert line[10:18].min() == 255 and line[:9].max() == 0 and line[19:].max() == 0
    assert np.delete(converted, 13, axis=0).max() == 0


def test_padding_centres_the_picture_with_the_odd_pixel_last():
    tall = np.array([[1], [2], [3]], dtype=np.uint8)
    assert pad_to_square(tall, 9).tolist() == [[9, 1, 9], [9, 2, 9], [9, 3, 9]]
    wide = np.array([[1, 2, 3, 4]], dtype=np.uint8)
    assert pad_to_square(wide, 0).tolist() == [[0] * 4, [1, 2, 3, 4], [0] * 4, [0] * 4]


# ---------------------------------------------------------------------------------- bad files
def png_declaring(width: int, height: int) -> bytes:
    """A PNG header for a ``width``×``height`` grayscale picture, and no pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture\n")
    with pytest.raises(DataError, match=r"^.*notes\.png: not an image that Pillow can read$"):
        read_image(path)


def test_a_truncated_png(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    path = saved(tmp_path, "cut.png", noise)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError) as caught:
        read_image(path)
    assert str(caught.value) == f"{path}: cannot read the image: image file is truncated"


@pytest.mark.parametrize(
    ("pixels", "kind"),
    [(np.float32, "floating-point"), (np.int32, "integer")],
)
def test_a_32_bit_picture_is_refused_not_cut_to_bytes(tmp_path, pixels, kind):
    """A float TIFF of 0 to 1 came out black, a 32-bit one of 0 to 255 nearly so."""
    bar = np.ones((28, 28), pixels)
    bar[10:18] = 0
    path = saved(tmp_path, "bar.tif", bar)
    with pytest.raises(DataError, match=rf"^.*bar\.tif: a 32-bit {kind} picture, whose scale"):
        read_image(path)


def test_a_missing_file(tmp_path):
    with pytest.raises(DataError) as caught:
        read_image(tmp_path / "gone.png")
    assert (
        str(caught.value)
        == f"{tmp_path / 'gone.png'}: cannot read the image: No such file or directory"
    )


def test_a_header_declaring_ten_gigapixels_is_refused_unread(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(100_000, 100_000))
    assert path.stat().st_size < 100
    peak = peak_allocation(lambda: read_image(path), DataError)
    assert peak < 1_000_000
    with pytest.raises(DataError, match=r"bomb\.png: Image size \(10000000000 pixels\) exceeds"):
        read_image(path)


def test_a_picture_over_pillows_limit_is_refused_not_warned_about(tmp_path, monkeypatch):
    """Between ``MAX_IMAGE_PIXELS`` and twice it Pillow only warns; that is refused too."""
    path = saved(tmp_path, "big.png", np.zeros((40, 40), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"big\.png: Image size \(1600 pixels\) exceeds limit"):
        read_image(path)


def test_without_pillow_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(MissingExtra) as caught:
        read_image(tmp_path / "any.png")
    assert str(caught.value) == (
        "reading images needs PIL.Image: pip install 'mlp-backprop[images]' (or pip install pillow)"
    )
