"""Reading photos: every PIL image mode at its true scale, as float32 RGBA in [0, 1].

PIL keeps 16-bit greyscale PNGs as integers up to 65535 (modes I;16* or I), which `convert("RGBA")` would clip
to white, so integer and float modes are scaled here by their bit depth instead. JPEG (and other) photos carry
their camera orientation as EXIF metadata, which is applied so that pixels are where the viewer shows them.
"""
import contextlib

import numpy as np
from PIL import Image
from PIL import ImageOps

from jaxnerf import storage
from jaxnerf.errors import DataError

# 8-bit modes that PIL converts to RGBA exactly (palette, greyscale, CMYK and colour-space modes included).
EIGHT_BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _grey_to_rgba(grey):
  """[H, W] float32 in [0, 1] -> [H, W, 4] opaque RGBA."""
  return np.concatenate([np.repeat(grey[..., None], 3, axis=-1), np.ones_like(grey[..., None])], axis=-1)


def _integer_white(image):
  """The value of white in a PIL mode-I image: PIL widens 16-bit PNGs and signed or unsigned 8-, 16- and 32-bit
  TIFFs to 32-bit integers, so the file's own bit depth and sample format (TIFF tags 258 and 339) set it."""
  if image.format != "TIFF":
    return 2 ** 16 - 1 if image.format == "PNG" else 2 ** 31 - 1
  bits = image.tag_v2.get(258, (32,))
  bits = int(bits[0] if isinstance(bits, tuple) else bits)
  sample_format = image.tag_v2.get(339, (1,))
  signed = int(sample_format[0] if isinstance(sample_format, tuple) else sample_format) == 2
  return 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1


def _to_rgba(image, path, integer_white):
  """The pixels of a loaded PIL image as [height, width, 4] float32 RGBA in [0, 1]; `integer_white` is the value
  of white if its mode is I."""
  mode = image.mode
  if mode in EIGHT_BIT_MODES:
    return np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
  if mode in SIXTEEN_BIT_MODES:
    return _grey_to_rgba(np.asarray(image, dtype=np.float32) / 65535.0)
  if mode == "I":
    values = np.asarray(image, dtype=np.int64)
    if values.min(initial=0) < 0:
      raise DataError(f"{path}: integer image (mode I) has negative values; expected intensities >= 0")
    return _grey_to_rgba((values / float(integer_white)).astype(np.float32))
  if mode == "F":
    values = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(values)):
      raise DataError(f"{path}: float image (mode F) has non-finite values; expected intensities in [0, 1]")
    if values.min(initial=0) < 0 or values.max(initial=0) > 1:
      raise DataError(f"{path}: float image (mode F) must hold intensities in [0, 1], got values in "
                      f"[{values.min():g}, {values.max():g}]")
    return _grey_to_rgba(values)
  raise DataError(f"{path}: image mode {mode} is not supported (expected 8- or 16-bit greyscale, palette, RGB or "
                  "RGBA, or 32-bit integer or float greyscale)")


def read_rgba(path):
  """Read an image file as [height, width, 4] float32 RGBA in [0, 1] (opaque alpha where the file has none).

  EXIF orientation is applied. DataError, one line naming the file, for a missing, unreadable or unsupported one.
  """
  with _opened(path) as image:
    image.load()
    integer_white = _integer_white(image) if image.mode == "I" else None
    return _to_rgba(ImageOps.exif_transpose(image), path, integer_white)


def read_size(path):
  """(height, width) of an image file as read_rgba would return it (EXIF orientation applied), from its header
  alone; the same DataError as read_rgba for a missing or unreadable file."""
  with _opened(path) as image:
    width, height = image.size
    # EXIF orientations 5 to 8 turn the image by a quarter turn.
    return (width, height) if image.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (height, width)


@contextlib.contextmanager
def _opened(path):
  """PIL's image at `path`, with its errors turned into one DataError line naming the file."""
  try:
    with storage.open_file(path, "rb") as f, Image.open(f) as image:
      yield image
  except DataError:
    raise
  except FileNotFoundError:
    raise DataError(f"{path}: image file not found") from None
  except IsADirectoryError:
    raise DataError(f"{path}: is a folder, expected an image file") from None
  except Image.DecompressionBombError as e:
    raise DataError(f"{path}: image too large ({e})") from None
  except (OSError, SyntaxError, ValueError, TypeError) as e:
    raise DataError(f"{path}: not a readable image ({e})") from None


def to_uint8(image):
  """[..., c] float colours in [0, 1] -> uint8 (rounded, clipped)."""
  return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def downsample_premultiplied(rgba, factor):
  """Area-average an RGBA image by an integer factor, in premultiplied colour.

  Args:
    rgba: [height, width, 4] straight (not premultiplied) RGBA.
    factor: integer dividing both height and width.

  Returns:
    [height / factor, width / factor, 4] premultiplied RGBA (colour already multiplied by alpha).
  """
  h, w, _ = rgba.shape
  premultiplied = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
  if factor == 1:
    return premultiplied
  return premultiplied.reshape(h // factor, factor, w // factor, factor, 4).mean(axis=(1, 3))


def composite_on_background(premultiplied, background):
  """[..., 4] premultiplied RGBA over a solid background colour -> [..., 3] RGB."""
  return premultiplied[..., :3] + (1.0 - premultiplied[..., 3:]) * np.asarray(background, np.float32)
