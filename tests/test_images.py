"""Image reading: hand-made arrays written in each PIL mode read back at their true scale, EXIF orientation applied,
and unreadable images rejected with one line naming the file."""
import numpy as np
import pytest
from PIL import Image

from jaxnerf.data import images
from jaxnerf.errors import DataError

H, W = 5, 7


def grid(scale, dtype):
  """[H, W] values spread over [0, scale], both ends included."""
  return np.round(np.linspace(0, scale, H * W).reshape(H, W)).astype(dtype)


def rgba_of_grey(grey):
  return np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)


def test_8_bit_modes(tmp_path):
  rng = np.random.default_rng(0)
  rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
  cases = {
      "rgb": (Image.fromarray(rgba[..., :3], "RGB"), np.concatenate([rgba[..., :3], np.full((H, W, 1), 255)], -1)),
      "rgba": (Image.fromarray(rgba, "RGBA"), rgba),
      "l": (Image.fromarray(rgba[..., 0], "L"), rgba_of_grey(rgba[..., 0]) * [1, 1, 1, 255]),
      "la": (Image.fromarray(rgba[..., :2].copy(), "LA"),
             np.stack([rgba[..., 0]] * 3 + [rgba[..., 1]], axis=-1)),
  }
  bits = rgba[..., 0] > 127
  cases["bilevel"] = (Image.fromarray(bits), rgba_of_grey(bits * 255) * [1, 1, 1, 255])
  palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
  indices = rgba[..., 0]
  paletted = Image.fromarray(indices, "L").convert("P")
  paletted.putpalette(palette.reshape(-1).tolist())
  cases["palette"] = (paletted, np.concatenate([palette[indices], np.full((H, W, 1), 255)], -1))
  for name, (image, expected) in cases.items():
    path = str(tmp_path / f"{name}.png")
    image.save(path)
    np.testing.assert_allclose(images.read_rgba(path), expected / 255.0, atol=1e-7, err_msg=name)


def test_16_bit_greyscale_png_at_true_scale(tmp_path):
  grey = grid(65535, np.uint16)
  path = str(tmp_path / "grey16.png")
  Image.fromarray(grey).save(path)
  assert Image.open(path).mode.startswith("I")
  rgba = images.read_rgba(path)
  np.testing.assert_allclose(rgba, rgba_of_grey(grey / 65535.0), atol=1e-7)
  assert rgba.max() == 1.0 and np.count_nonzero(rgba[..., 0] == 1.0) == 1


@pytest.mark.parametrize("dtype, white", [(np.uint16, 2 ** 16 - 1), (np.int32, 2 ** 31 - 1)])
def test_integer_tiff_at_its_bit_depth(tmp_path, dtype, white):
  grey = grid(white, dtype)
  path = str(tmp_path / "grey.tif")
  Image.fromarray(grey).save(path)
  np.testing.assert_allclose(images.read_rgba(path), rgba_of_grey(grey / float(white)), atol=1e-7)


def test_float_tiff(tmp_path):
  grey = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
  path = str(tmp_path / "grey.tif")
  Image.fromarray(grey).save(path)
  np.testing.assert_array_equal(images.read_rgba(path), rgba_of_grey(grey))


@pytest.mark.parametrize("values, what", [(np.full((H, W), np.nan, np.float32), "mode F"),
                                          (np.full((H, W), 2.0, np.float32), "mode F"),
                                          (np.full((H, W), -0.5, np.float32), "mode F"),
                                          (np.full((H, W), -3, np.int32), "mode I")])
def test_out_of_range_images_rejected_naming_file_and_mode(tmp_path, values, what):
  path = str(tmp_path / "bad.tif")
  Image.fromarray(values).save(path)
  with pytest.raises(DataError, match=what) as error:
    images.read_rgba(path)
  assert str(error.value).startswith(path) and "\n" not in str(error.value)


def test_unsupported_mode_rejected(tmp_path, monkeypatch):
  path = str(tmp_path / "grey.png")
  Image.fromarray(grid(255, np.uint8)).save(path)
  monkeypatch.setattr(images, "EIGHT_BIT_MODES", ())
  with pytest.raises(DataError, match=r"grey.png: image mode L is not supported"):
    images.read_rgba(path)


def test_jpeg_exif_orientation_applied(tmp_path):
  # A tall image of blocks stored sideways with orientation 6 (rotate 90 degrees clockwise to display).
  displayed = np.zeros((32, 16, 3), np.uint8)
  displayed[:16, :8] = (255, 0, 0)
  displayed[:16, 8:] = (0, 255, 0)
  displayed[16:, :8] = (0, 0, 255)
  displayed[16:, 8:] = (255, 255, 255)
  stored = np.rot90(displayed, k=1)  # what a sensor held sideways records: displaying rotates it back clockwise
  exif = Image.Exif()
  exif[0x0112] = 6
  path = str(tmp_path / "photo.jpg")
  Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=100, subsampling=0, exif=exif)
  rgba = images.read_rgba(path)
  assert rgba.shape == (32, 16, 4)
  interior = np.ix_(np.r_[2:14, 18:30], np.r_[2:6, 10:14])  # away from the block edges JPEG blurs
  np.testing.assert_allclose(rgba[..., :3][interior], (displayed / 255.0)[interior], atol=0.05)


@pytest.mark.parametrize("content, message", [(None, "image file not found"), (b"not an image", "not a readable")])
def test_missing_and_corrupt_files(tmp_path, content, message):
  path = str(tmp_path / "x.png")
  if content is not None:
    with open(path, "wb") as f:
      f.write(content)
  with pytest.raises(DataError, match=message) as error:
    images.read_rgba(path)
  assert str(error.value).startswith(path) and "\n" not in str(error.value)
