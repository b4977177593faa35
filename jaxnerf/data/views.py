"""Posed images of one split of a scene, and the rays through their pixels."""
import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from jaxnerf.core import rays as rays_lib
from jaxnerf.errors import DataError


@dataclasses.dataclass
class Views:
  """A set of posed images of one size and camera model, each view with its own intrinsics.

  Attributes:
    images: [num_views, height, width, 3] float32 colours in [0, 1].
    cam_to_world: [num_views, 3, 4] float32 camera-to-world matrices (OpenGL convention, see rays.py).
    focal: nominal focal length in pixels (NDC rays and views without `intrinsics` use it).
    near, far: distance bounds along the rays.
    names: source image of each view, e.g. "test/r_25".
    pixel_center: rays through pixel centres rather than corners.
    ndc: rays are mapped to normalised device coordinates (forward-facing scenes, see rays.to_ndc).
    bounds: [num_views, 2] near and far scene depth of each view, where the dataset records them (LLFF).
    alpha: [num_views, height, width] float32 opacity of RGBA images, which `images` holds composited onto
      `background`; lets training recomposite them onto other backgrounds.
    background: the RGB colour transparent pixels were composited onto.
    intrinsics: [num_views, 4] float32 (fx, fy, cx, cy) in pixels at the loaded size; None (the default) fills
      in `focal` and the image centre.
    camera_model: "pinhole", "opencv" or "opencv_fisheye" (rays.CAMERA_MODELS).
    distortion: [num_views, 6] float32 lens coefficients in rays.DISTORTION_KEYS order; None fills in zeros.
    scene_from_world: [4, 4] similarity the loader applied to the input's poses (identity where it applied none);
      its inverse maps renders and exports back to the input's frame.
    split_names: names of the frames of each split ("train", "test"), where the loader chose the split.
    held: [num_held] int, the views whose photos `images` and `alpha` hold, in order (a process's share of the
      training views in a multi-host job, see share_of); None (the default): every view's. Poses, intrinsics and
      names are those of every view.
  """
  images: np.ndarray
  cam_to_world: np.ndarray
  focal: float
  near: float
  far: float
  names: List[str]
  pixel_center: bool = True
  ndc: bool = False
  bounds: Optional[np.ndarray] = None
  alpha: Optional[np.ndarray] = None
  background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
  intrinsics: Optional[np.ndarray] = None
  camera_model: str = "pinhole"
  distortion: Optional[np.ndarray] = None
  scene_from_world: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))
  split_names: Optional[Dict[str, List[str]]] = None
  held: Optional[np.ndarray] = None

  def __post_init__(self):
    if self.intrinsics is None:
      self.intrinsics = np.tile(np.array([self.focal, self.focal, self.width / 2, self.height / 2], np.float32),
                                (len(self), 1))
    if self.distortion is None:
      self.distortion = np.zeros((len(self), len(rays_lib.DISTORTION_KEYS)), np.float32)
    self.intrinsics = np.asarray(self.intrinsics, np.float32)
    self.distortion = np.asarray(self.distortion, np.float32)

  @property
  def height(self):
    return self.images.shape[1]

  @property
  def width(self):
    return self.images.shape[2]

  def __len__(self):
    return self.cam_to_world.shape[0]

  def held_views(self):
    """[num_held] int: the views whose photos are held (all of them unless the views are a share)."""
    return np.arange(len(self)) if self.held is None else self.held

  def pixel_rays(self, view, x, y):
    """Rays through pixels (x, y) of views `view`; all [...] integer arrays. Returns [..., 3] float32 Rays."""
    rays = rays_lib.lens_rays(x.astype(np.float32), y.astype(np.float32), self.intrinsics[view],
                              self.cam_to_world[view], self.distortion[view], self.camera_model, self.pixel_center,
                              xnp=np)
    return self._to_ndc(rays, self.width, self.height, self.focal)

  def image_rays(self, view):
    """All rays of one view: [height, width, 3] Rays."""
    return self.camera_rays(self.cam_to_world[view], view=view)

  def camera_rays(self, cam_to_world, factor=1, view=0):
    """All rays of a camera with the camera model of view `view` at any pose, e.g. along a video path.

    Args:
      cam_to_world: [3, 4].
      factor: integer downsampling of the image size (and of the focal lengths and principal point).
      view: whose intrinsics and lens distortion to use.

    Returns:
      [height / factor, width / factor, 3] Rays.
    """
    height, width, focal = self.height // factor, self.width // factor, self.focal / factor
    x, y = rays_lib.pixel_grid(height, width, xnp=np)
    intrinsics = self.intrinsics[view] / np.float32(factor)
    rays = rays_lib.lens_rays(x, y, intrinsics, np.asarray(cam_to_world, np.float32), self.distortion[view],
                              self.camera_model, self.pixel_center, xnp=np)
    return self._to_ndc(rays, width, height, focal)

  def pinhole_rays(self, cam_to_world, width, height, fov_y):
    """All rays of a pinhole camera of this scene (NDC if it is) at any pose, size and vertical field of view
    (radians), with square pixels and the principal point at the centre: a viewer's or a camera path's camera.

    Returns:
      [height, width, 3] Rays.
    """
    focal = 0.5 * height / np.tan(0.5 * fov_y)
    x, y = rays_lib.pixel_grid(height, width, xnp=np)
    intrinsics = np.array([focal, focal, width / 2, height / 2], np.float32)
    rays = rays_lib.lens_rays(x, y, intrinsics, np.asarray(cam_to_world, np.float32), pixel_center=self.pixel_center,
                              xnp=np)
    return self._to_ndc(rays, width, height, focal)

  def _to_ndc(self, rays, width, height, focal):
    return rays_lib.to_ndc(rays, np.float32(width), np.float32(height), np.float32(focal)) if self.ndc else rays


def share_of(num_views, share, where):
  """[num_held] int: the views of `share` = (process index, process count) among `num_views`, every count-th from
  the index (None: all); each of a job's processes holds its own, about 1/count of the views. DataError naming
  `where` (the split's file or folder) if a process would hold none."""
  if share is None:
    return np.arange(num_views)
  index, count = share
  if num_views < count:
    raise DataError(f"{where}: {num_views} training views cannot be shared by {count} processes (each needs one)")
  return np.arange(index, num_views, count)
