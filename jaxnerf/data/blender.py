"""Blender synthetic scenes (NeRF paper): transforms_{split}.json and RGBA PNGs."""
import os

import numpy as np

from jaxnerf import storage
from jaxnerf.data import images as images_lib
from jaxnerf.data import scene_files
from jaxnerf.data.views import Views
from jaxnerf.data.views import share_of
from jaxnerf.errors import DataError

SPLITS = ("train", "val", "test")


def load_split(data_dir, split, factor=1, background=(1.0, 1.0, 1.0), near=2.0, far=6.0, stride=1,
               pixel_center=True, check_only=False, share=None):
  """Load one split of a Blender scene.

  Args:
    data_dir: folder holding transforms_{split}.json and the images it names.
    split: "train", "val" or "test".
    factor: integer downsampling factor (area averaging of premultiplied colour).
    background: RGB the transparent parts are composited onto (white in the standard protocol).
    near, far: ray bounds.
    stride: keep every stride-th frame of the JSON.
    check_only: check every frame (its pose, and its image's header: readable, of the scene's size) and return
      None, without decoding the images.
    share: (process index, process count): decode only that process's share of the photos (views.share_of).

  Returns:
    Views with images [N, H / factor, W / factor, 3].
  """
  json_path = storage.join(data_dir, f"transforms_{split}.json")
  if not storage.isdir(data_dir):
    raise DataError(f"{data_dir}: data directory not found")
  meta = scene_files.read_json(json_path, "a Blender transforms JSON")
  if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
    raise DataError(f"{json_path}: expected an object with 'camera_angle_x' and a list of 'frames'")
  if "camera_angle_x" not in meta:
    raise DataError(f"{json_path}: 'camera_angle_x' (the horizontal field of view in radians) is missing")
  camera_angle_x = meta["camera_angle_x"]
  if not scene_files.is_number(camera_angle_x) or not 0 < camera_angle_x < np.pi:
    raise DataError(f"{json_path}: 'camera_angle_x' must be the horizontal field of view in radians, a number "
                    f"between 0 and pi, got {scene_files.short_repr(camera_angle_x)}")
  frames = meta["frames"][::stride]
  if not frames:
    raise DataError(f"{json_path}: split '{split}' has no frames")

  held = share_of(len(frames), share, json_path)
  row_of = {int(i): row for row, i in enumerate(held)}  # frame -> its row in `images`
  images, poses, names = None, [], []
  full_size = None
  for i, frame in enumerate(frames):
    if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
      raise DataError(f"{json_path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'")
    relative_path = scene_files.scene_relative_path(frame["file_path"], f"{json_path}: frame {i}: 'file_path'")
    pose = scene_files.frame_pose(frame, f"{json_path}: frame {i} ({frame['file_path']})", shapes=((4, 4),))
    image_path = storage.join(data_dir, relative_path)
    if not os.path.splitext(image_path)[1]:
      image_path += ".png"
    if not check_only and i not in row_of:  # another process's photo
      poses.append(pose)
      names.append(relative_path)
      continue
    rgba = None if check_only else images_lib.read_rgba(image_path)
    h, w = images_lib.read_size(image_path) if check_only else rgba.shape[:2]
    if h % factor or w % factor:
      raise DataError(f"{image_path}: downsampling factor {factor} does not divide the image size {w}x{h}")
    if full_size is not None and (h, w) != full_size:
      raise DataError(f"{image_path}: image is {w}x{h}, expected {full_size[1]}x{full_size[0]} like the "
                      "other images of the scene")
    full_size = (h, w)
    if check_only:
      continue
    if images is None:  # filled in place: a list and a stacked copy would need twice the memory
      images = np.empty((len(held), h // factor, w // factor, 3), np.float32)
      alpha = np.empty((len(held), h // factor, w // factor), np.float32)
    premultiplied = images_lib.downsample_premultiplied(rgba, factor)
    images[row_of[i]] = images_lib.composite_on_background(premultiplied, background)
    alpha[row_of[i]] = premultiplied[..., 3]
    poses.append(pose)
    names.append(relative_path)

  if check_only:
    return None
  width = full_size[1] // factor
  focal = 0.5 * width / np.tan(0.5 * float(camera_angle_x))
  return Views(images=images, cam_to_world=np.stack(poses).astype(np.float32),
               focal=float(focal), near=near, far=far, names=names, pixel_center=pixel_center, alpha=alpha,
               background=tuple(float(c) for c in background), held=None if share is None else held)
