"""Blender synthetic scenes (NeRF paper): transforms_{split}.json and RGBA PNGs."""
import json
import math
import os

import numpy as np

from jaxnerf.data.images import read_rgba
from jaxnerf.data.views import Views
from jaxnerf.data.views import check_pose
from jaxnerf.errors import DataError

SPLITS = ("train", "val", "test")


def read_json(path, what):
  """The parsed JSON file at `path` (`what` it should be, for the messages); DataError if it cannot be read."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise DataError(f"{path}: file not found (expected {what})") from None
  except json.JSONDecodeError as e:
    raise DataError(f"{path}: malformed JSON ({e})") from None
  except UnicodeDecodeError:
    raise DataError(f"{path}: not UTF-8 text (expected {what})") from None
  except RecursionError:
    raise DataError(f"{path}: JSON nested too deeply (expected {what})") from None
  except OSError as e:
    raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def is_number(value):
  """A finite JSON number (bools, which Python counts as ints, are not)."""
  if isinstance(value, bool):
    return False
  return isinstance(value, int) or isinstance(value, float) and math.isfinite(value)


def short_repr(value, limit=60):
  """repr(value) on one line, cut to `limit` characters, for error messages about a scene file's content."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def scene_relative_path(file_path, where):
  """The normalised `file_path` of a scene file, checked to be a relative path inside the scene folder.

  It names the view's outputs too (eval/<name>.png), so an absolute path or one leaving the folder (`..`) could
  make evaluation write outside the workdir; DataError for those, non-strings, empty strings and control
  characters.
  """
  if not isinstance(file_path, str) or not file_path.strip():
    raise DataError(f"{where} must be a non-empty string, got {short_repr(file_path)}")
  if any(ord(c) < 32 or ord(c) == 127 for c in file_path):
    raise DataError(f"{where} must not contain control characters, got {short_repr(file_path)}")
  normalised = os.path.normpath(file_path)
  if os.path.isabs(normalised) or normalised == ".." or normalised.startswith(".." + os.sep) or normalised == ".":
    raise DataError(f"{where} must be a path inside the scene folder, relative to it, got {short_repr(file_path)}")
  return normalised


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
  meta = read_json(json_path, "a Blender transforms JSON")
  if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
    raise DataError(f"{json_path}: expected an object with 'camera_angle_x' and a list of 'frames'")
  if "camera_angle_x" not in meta:
    raise DataError(f"{json_path}: 'camera_angle_x' (the horizontal field of view in radians) is missing")
  camera_angle_x = meta["camera_angle_x"]
  if not is_number(camera_angle_x) or not 0 < camera_angle_x < np.pi:
    raise DataError(f"{json_path}: 'camera_angle_x' must be the horizontal field of view in radians, a number "
                    f"between 0 and pi, got {short_repr(camera_angle_x)}")
  frames = meta["frames"][::stride]
  if not frames:
    raise DataError(f"{json_path}: split '{split}' has no frames")

  images, poses, names = None, [], []
  full_size = None
  for i, frame in enumerate(frames):
    if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
      raise DataError(f"{json_path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'")
    relative_path = scene_relative_path(frame["file_path"], f"{json_path}: frame {i}: 'file_path'")
    file_path = frame["file_path"]
    try:
      pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
      raise DataError(f"{json_path}: frame {i} ({file_path}): 'transform_matrix' must be a 4x4 array of "
                      "numbers") from None
    if np.any(np.abs(pose[np.isfinite(pose)]) > np.finfo(np.float32).max):
      raise DataError(f"{json_path}: frame {i} ({file_path}): 'transform_matrix' has entries too large for "
                      "float32")
    check_pose(pose, f"{json_path}: frame {i} ({file_path})", field="transform_matrix", shapes=((4, 4),))
    image_path = os.path.join(data_dir, relative_path)
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
    names.append(relative_path)

  width = full_size[1] // factor
  focal = 0.5 * width / np.tan(0.5 * float(camera_angle_x))
  return Views(images=images, cam_to_world=np.stack(poses).astype(np.float32),
               focal=float(focal), near=near, far=far, names=names, pixel_center=pixel_center, alpha=alpha,
               background=tuple(float(c) for c in background))
