"""A picture as a model input, made the way the MNIST-family datasets made theirs.

Their images are 28×28 grayscale with light strokes on a dark, zero background, stored as
one uint8 row of 784 pixels (the model scales uint8 by 1/255 itself). A user's PNG or JPEG
is usually the opposite (a dark drawing on white paper), of any size and shape, so
``image_input`` converts it: grayscale, polarity from the border, padded to a square with
the background, resized to 28×28. Pillow is imported when first needed (the ``images``
extra), so ``import mlp`` still needs NumPy alone.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import DataError
from ..extras import require
from .datasets import IMAGE_SHAPE

#: The width of the model input an image becomes (28 × 28 = 784).
IMAGE_INPUTS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
#: The suffixes read as images: formats Pillow always reads (its built-in decoders).
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".pbm", ".pgm", ".ppm", ".pnm", ".tga", ".ico",
)  # fmt: skip
#: A border median above this is light: the picture is dark on light and gets inverted.
MIDDLE_GREY = 127.5
#: Pillow's modes for 16-bit grayscale, which its own conversion to "L" would clip at 255.
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def require_pillow() -> ModuleType:
    """``PIL.Image``, or the ``MissingExtra`` that names the ``images`` extra."""
    return require("PIL.Image", "images", "reading images", package="pillow")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The picture in ``path`` as one model input: a uint8 row of 784 pixels (``image_input``).

    A file Pillow cannot read (not an image, truncated) is a ``DataError`` naming it; so is
    one of more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``, refused from its header before
    anything is decoded (a small file can declare a picture of gigabytes).
    """
    Image = require_pillow()
    with _decoded(Image, path) as image:
        try:
            return image_input(image)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None


def _decoded(Image: ModuleType, path: str | os.PathLike) -> Any:
    """``path`` opened and decoded by Pillow (to be closed by the caller); its failures as
    one ``DataError`` naming the file."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between the limit and twice it; here that is a refusal too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
        try:
            image.load()
        except BaseException:
            image.close()
            raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: {exc}") from None  # says the size and the limit
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not an image that Pillow can read") from None
    except OSError as exc:  # a truncated or corrupt file; one that cannot be opened
        raise DataError(f"{path}: cannot read the image: {exc.strerror or exc}") from None
    except (SyntaxError, ValueError, EOFError) as exc:  # what some of Pillow's decoders raise
        raise DataError(f"{path}: cannot read the image: {exc}") from None
    return image


def image_input(image: Any) -> np.ndarray:
    """A Pillow image as the datasets hold theirs: a uint8 row of 28 × 28 = 784 pixels.

    The picture is turned upright (a photo's EXIF orientation), laid on white where it is
    transparent, made grayscale, and inverted when its border is lighter than mid-grey
    (its median above 127.5), so that the background is dark as in the datasets; then
    resized, its proportions kept, until its longer side is 28 (shrunk by area averaging,
    ``BOX``: each pixel the mean of those it covers, no ringing; enlarged with ``LANCZOS``),
    and centred on 28×28 of the background's grey (the border's median). Resized before it
    is padded, so a long thin strip never becomes a huge square in memory.
    """
    Image = require_pillow()
    ImageOps = require("PIL.ImageOps", "images", "reading images", package="pillow")
    refuse_32_bits(image)
    pixels = grayscale(upright(ImageOps, image))
    background = float(np.median(border(pixels)))
    if background > MIDDLE_GREY:
        pixels = 255 - pixels
        background = 255 - background
    side = max(pixels.shape)
    if side != IMAGE_SHAPE[0]:
        resample = Image.Resampling.BOX if side > IMAGE_SHAPE[0] else Image.Resampling.LANCZOS
        height, width = (max(1, round(n * IMAGE_SHAPE[0] / side)) for n in pixels.shape)
        pixels = np.asarray(Image.fromarray(pixels).resize((width, height), resample))
    square = pad_to_square(pixels, round(background))
    return np.ascontiguousarray(square, dtype=np.uint8).reshape(IMAGE_INPUTS)


def upright(ImageOps: Any, image: Any) -> Any:
    """The picture turned as its EXIF orientation says; a corrupt EXIF block (which Pillow
    warns of, or fails on) leaves it as stored: the pixels themselves are fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return ImageOps.exif_transpose(image)
        except (SyntaxError, ValueError, OSError, EOFError, KeyError, TypeError):
            return image


def refuse_32_bits(image: Any) -> None:
    """A 32-bit picture is refused: its pixels may mean 0 to 1, 0 to 255 or anything, and
    Pillow would cut them to bytes (one of 0 to 1 would come out black). A PNG holds at most
    16 bits, which older Pillows open as 32-bit integers (mode ``I``)."""
    if image.mode == "F" or (image.mode == "I" and image.format != "PNG"):
        kind = "floating-point" if image.mode == "F" else "integer"
        raise DataError(
            f"a 32-bit {kind} picture, whose scale is unknown: save it as 8- or 16-bit "
            "grayscale (PNG, say)"
        )


def grayscale(image: Any) -> np.ndarray:
    """The image's luminance as a 2-D uint8 array; transparent parts count as white (as a
    viewer shows them), 16-bit gray is scaled to 8 bits (Pillow would clip it)."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return np.clip(np.rint(values / 257), 0, 255).astype(np.uint8)
    if "A" in image.getbands() or "transparency" in image.info:
        Image = require_pillow()
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def border(pixels: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, each once: where a picture's background shows."""
    if min(pixels.shape) <= 2:
        return pixels.reshape(-1)
    return np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])


def pad_to_square(pixels: np.ndarray, fill: int) -> np.ndarray:
    """``pixels`` centred in a square of ``fill`` (an odd margin's extra pixel below or to
    the right)."""
    height, width = pixels.shape
    side = max(height, width)
    square = np.full((side, side), fill, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = pixels
    return square
