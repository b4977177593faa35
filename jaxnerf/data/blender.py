"""Blender synthetic scenes (NeRF paper): transforms_{split}.json and RGBA PNGs."""
import json
import os

import numpy as np
from PIL import Image

from jaxnerf.data.views import Views
from jaxnerf.data.views import check_pose
from jaxnerf.errors import DataError

SPLITS = ("train", "val", "test")


def read_rgba(path):
  """Read an image file as [height, width, 4] float32 RGBA in [0, 1] (opaque alpha for RGB files)."""
  try:
    with Image.open(path) as image:
      image.load()
      rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
  except FileNotFoundError:
    raise DataError(f"{path}: image file not found") from None
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{path}: not a readable image ({e})") from None
  return rgba


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


def load_split(data_dir, split, factor=1, background=(1.0, 1.0, 1.0), near=2.0, far=6.0, stride=1,
               pixel_center=True):
  """Load one split of a Blender scene.

  Args:
    data_dir: folder holding transforms_{split}.json and the images it names.
    split: "train", "val" or "test".
    factor: integer downsampling factor (area averaging of premultiplied colour).
    background: RGB the transparent parts are composited onto (white in the standard protocol).
    near, far: ray bounds.
    stride: keep every stride-th frame of the JSON.

  Returns:
    Views with images [N, H / factor, W / factor, 3].
  """
  json_path = os.path.join(data_dir, f"transforms_{split}.json")
  if not os.path.isdir(data_dir):
    raise DataError(f"{data_dir}: data directory not found")
  try:
    with open(json_path) as f:
      meta = json.load(f)
  except FileNotFoundError:
    raise DataError(f"{json_path}: file not found (expected a Blender transforms JSON)") from None
  except json.JSONDecodeError as e:
    raise DataError(f"{json_path}: malformed JSON ({e})") from None
  if not isinstance(meta, dict) or "camera_angle_x" not in meta or not isinstance(meta.get("frames"), list):
    raise DataError(f"{json_path}: expected an object with 'camera_angle_x' and a list of 'frames'")
  frames = meta["frames"][::stride]
  if not frames:
    raise DataError(f"{json_path}: split '{split}' has no frames")

  images, poses, names = None, [], []
  full_size = None
  for i, frame in enumerate(frames):
    try:
      file_path = frame["file_path"]
      pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
      raise DataError(f"{json_path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'") from None
    check_pose(pose, f"{json_path}: frame {i} ({file_path})", field="transform_matrix", shapes=((4, 4),))
    image_path = os.path.join(data_dir, os.path.normpath(file_path))
    if not os.path.splitext(image_path)[1]:
      image_path += ".png"
    rgba = read_rgba(image_path)
    h, w = rgba.shape[:2]
    if h % factor or w % factor:
      raise DataError(f"{image_path}: downsampling factor {factor} does not divide the image size {w}x{h}")
    if full_size is not None and (h, w) != full_size:
      raise DataError(f"{image_path}: image is {w}x{h}, expected {full_size[1]}x{full_size[0]} like the "
                      "other images of the scene")
    full_size = (h, w)
    if images is None:  # filled in place: a list and a stacked copy would need twice the memory
      images = np.empty((len(frames), h // factor, w // factor, 3), np.float32)
      alpha = np.empty((len(frames), h // factor, w // factor), np.float32)
    premultiplied = downsample_premultiplied(rgba, factor)
    images[i] = composite_on_background(premultiplied, background)
    alpha[i] = premultiplied[..., 3]
    poses.append(pose[:3, :4])
    names.append(os.path.normpath(file_path))

  width = full_size[1] // factor
  focal = 0.5 * width / np.tan(0.5 * float(meta["camera_angle_x"]))
  return Views(images=images, cam_to_world=np.stack(poses).astype(np.float32),
               focal=float(focal), near=near, far=far, names=names, pixel_center=pixel_center, alpha=alpha,
               background=tuple(float(c) for c in background))
