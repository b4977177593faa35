"""LLFF forward-facing captures (Mildenhall et al. 2019): poses_bounds.npy and images_{factor}/.

Each row of poses_bounds.npy holds a 3x5 matrix, a 3x4 camera-to-world matrix whose rotation columns are LLFF's
[down, right, back] axes followed by a column (height, width, focal) of the full-resolution photos, then the near
and far depth bounds of the view. Loading converts the axes to the project's [right, up, back] (OpenGL)
convention, scales the scene so that the nearest bound is about 1, and recentres the poses on their average pose
(or, for inward-facing 360-degree captures, "spherifies" them), as the NeRF paper does.
"""
import io
import os

import numpy as np

from jaxnerf import storage
from jaxnerf.data import images as images_lib
from jaxnerf.core.poses import nearest_point_to_axes
from jaxnerf.core.poses import normalize
from jaxnerf.core.poses import recenter_poses
from jaxnerf.core.poses import to_homogeneous
from jaxnerf.data.views import Views
from jaxnerf.data.views import share_of
from jaxnerf.data.scene_files import check_pose
from jaxnerf.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The nearest scene bound lands at 1 / BOUND_MARGIN = 1.33 after scaling, safely beyond the NDC near plane at 1.
BOUND_MARGIN = 0.75


def read_poses_bounds(path):
  """Read and check poses_bounds.npy.

  Returns:
    poses: [N, 3, 5] float64 in LLFF's axis order, with the (height, width, focal) column.
    bounds: [N, 2] float64 near and far depth bounds.
  """
  try:
    with storage.open_file(path, "rb") as f:
      array = np.load(io.BytesIO(f.read()), allow_pickle=False)
  except FileNotFoundError:
    raise DataError(f"{path}: file not found (expected LLFF camera poses and bounds)") from None
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: not a readable .npy array ({e})") from None
  if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != 17:
    raise DataError(f"{path}: expected an array of shape [num_images, 17] (a 3x5 pose and 2 bounds per row), "
                    f"got shape {list(array.shape)}")
  array = array.astype(np.float64)
  if not np.all(np.isfinite(array)):
    raise DataError(f"{path}: has non-finite entries")
  bounds = array[:, 15:]
  if not np.all((bounds[:, 0] > 0) & (bounds[:, 1] > bounds[:, 0])):
    raise DataError(f"{path}: depth bounds must satisfy 0 < near < far in every row")
  return array[:, :15].reshape(-1, 3, 5), bounds


def llff_to_opengl(poses):
  """[..., 3, >=4] poses with [down, right, back] rotation columns -> [..., 3, 4] with [right, up, back]."""
  return np.concatenate([poses[..., 1:2], -poses[..., 0:1], poses[..., 2:4]], axis=-1)


def spherify_poses(poses, bounds):
  """For inward-facing captures: move the origin to the point the cameras look at, turn the mean direction to
  the cameras into +z, and scale so that the cameras lie at root-mean-square distance 1 from the origin.

  Returns:
    poses [N, 3, 4] and bounds [N, 2] in the new frame and scale.
  """
  centre = nearest_point_to_axes(poses)
  up = normalize((poses[:, :, 3] - centre).mean(0))
  # Any horizontal direction will do for the new x axis; this fixed vector is almost never parallel to `up`.
  right = normalize(np.cross(np.array([0.1, 0.2, 0.3]), up))
  world_from_scene = to_homogeneous(np.stack([right, np.cross(up, right), up, centre], axis=-1))
  poses = (np.linalg.inv(world_from_scene) @ to_homogeneous(poses))[:, :3, :]
  scale = 1.0 / np.sqrt(np.mean(np.sum(poses[:, :, 3] ** 2, axis=-1)))
  return np.concatenate([poses[:, :, :3], poses[:, :, 3:] * scale], axis=-1), bounds * scale


def image_folder(data_dir, factor):
  """The folder to read for a downsampling factor, and the factor still to apply to its images: images_{k} for
  the largest k dividing `factor` that exists (k = 1 is `images/`)."""
  for k in sorted((k for k in range(factor, 0, -1) if factor % k == 0), reverse=True):
    folder = storage.join(data_dir, "images" if k == 1 else f"images_{k}")
    if storage.isdir(folder):
      return folder, factor // k
  raise DataError(f"{data_dir}: no image folder for factor {factor} (expected images_{factor}/, images_k/ for a "
                  "k dividing it, or images/)")


def load_scene(data_dir, factor=4, spherify=False):
  """All photos of an LLFF scene, downsampled by `factor`, with poses in the project's convention.

  Returns:
    images [N, H, W, 3] float32, poses [N, 3, 4] float64 (OpenGL axes, recentred or spherified), bounds [N, 2]
    (scaled like the poses), focal length in pixels at the loaded size, and the image file names.
  """
  if not storage.isdir(data_dir):
    raise DataError(f"{data_dir}: data directory not found")
  poses_path = storage.join(data_dir, "poses_bounds.npy")
  raw_poses, bounds = read_poses_bounds(poses_path)
  for i, pose in enumerate(llff_to_opengl(raw_poses)):
    check_pose(pose, f"{poses_path}: row {i}")
  folder, extra_factor = image_folder(data_dir, factor)
  names = [n for n in storage.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
  if len(names) != len(raw_poses):
    raise DataError(f"{folder}: has {len(names)} images, expected {len(raw_poses)} (one per row of {poses_path})")

  images = []
  for name in names:
    path = storage.join(folder, name)
    rgb = images_lib.read_rgba(path)[..., :3]
    h, w = rgb.shape[:2]
    if h % extra_factor or w % extra_factor:
      raise DataError(f"{path}: downsampling factor {extra_factor} does not divide the image size {w}x{h}")
    if images and rgb.shape != images[0].shape:
      raise DataError(f"{path}: image is {w}x{h}, expected {images[0].shape[1]}x{images[0].shape[0]} like the "
                      "other images of the scene")
    images.append(rgb)
  # Area averaging: with an opaque alpha, premultiplied colour is the colour itself.
  images = np.stack([images_lib.downsample_premultiplied(np.concatenate([im, np.ones_like(im[..., :1])], -1),
                                                      extra_factor)[..., :3] for im in images])

  full_height, full_width, full_focal = raw_poses[0, :, 4]
  height, width = images.shape[1:3]
  if abs(width / height - full_width / full_height) > 0.01 * full_width / full_height:
    raise DataError(f"{folder}: images are {width}x{height}, not the {full_width:.0f}x{full_height:.0f} aspect "
                    f"ratio recorded in {poses_path}")
  focal = full_focal * width / full_width

  poses = llff_to_opengl(raw_poses)
  scale = 1.0 / (bounds.min() * BOUND_MARGIN)
  poses[:, :, 3] *= scale
  bounds = bounds * scale
  if spherify:
    poses, bounds = spherify_poses(poses, bounds)
  else:
    poses = recenter_poses(poses)
  return images.astype(np.float32), poses, bounds, float(focal), names


def split_indices(num_images, split, hold):
  """LLFF's split: every `hold`-th image (0, hold, 2 hold, ...) is a test (and validation) view, the rest train."""
  held_out = np.arange(num_images) % hold == 0
  return np.flatnonzero(~held_out if split == "train" else held_out)


def load_split(data_dir, split, factor=4, hold=8, spherify=False, ndc=True, stride=1, pixel_center=True,
               share=None):
  """Load one split ("train", "val" or "test"; val and test are the same held-out views) of an LLFF scene.

  With `ndc` (forward-facing scenes), rays are mapped to normalised device coordinates and sampled on [0, 1];
  otherwise between 0.9 times the nearest and the farthest scene bound. With `share` (process index, process
  count) only that process's share of the photos is kept (views.share_of); every photo is decoded first, since
  the scene's few photos fix its size and bounds together.

  Returns:
    Views with images [N, H, W, 3] and the views' scaled depth bounds.
  """
  if ndc and spherify:
    raise DataError(f"{data_dir}: NDC rays are for forward-facing scenes; set data.ndc=False with data.spherify")
  images, poses, bounds, focal, names = load_scene(data_dir, factor, spherify)
  indices = split_indices(len(images), split, hold)[::stride]
  if not len(indices):
    raise DataError(f"{data_dir}: split '{split}' has no images (data.llff_hold={hold}, {len(images)} images)")
  near, far = (0.0, 1.0) if ndc else (0.9 * float(bounds.min()), float(bounds.max()))
  held = share_of(len(indices), share, data_dir)
  return Views(images=images[indices[held]], held=None if share is None else held, cam_to_world=poses[indices].astype(np.float32), focal=focal, near=near,
               far=far, names=[f"{split}/{os.path.splitext(names[i])[0]}" for i in indices],
               pixel_center=pixel_center, ndc=ndc, bounds=bounds[indices])
