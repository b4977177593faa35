"""Posed images of one split of a scene, and the rays through their pixels."""
import dataclasses
from typing import List

import numpy as np

from jaxnerf import rays as rays_lib


@dataclasses.dataclass
class Views:
  """A set of posed images that share one pinhole camera model.

  Attributes:
    images: [num_views, height, width, 3] float32 colours in [0, 1].
    cam_to_world: [num_views, 3, 4] float32 camera-to-world matrices (OpenGL convention, see rays.py).
    focal: focal length in pixels.
    near, far: distance bounds along the rays.
    names: source image of each view, e.g. "test/r_25".
    pixel_center: rays through pixel centres rather than corners.
  """
  images: np.ndarray
  cam_to_world: np.ndarray
  focal: float
  near: float
  far: float
  names: List[str]
  pixel_center: bool = True

  @property
  def height(self):
    return self.images.shape[1]

  @property
  def width(self):
    return self.images.shape[2]

  def __len__(self):
    return self.images.shape[0]

  def pixel_rays(self, view, x, y):
    """Rays through pixels (x, y) of views `view`; all [...] integer arrays. Returns [..., 3] float32 Rays."""
    return rays_lib.pinhole_rays(
        x.astype(np.float32), y.astype(np.float32), np.float32(self.focal),
        (np.float32(self.width / 2), np.float32(self.height / 2)), self.cam_to_world[view],
        self.pixel_center, xnp=np)

  def image_rays(self, view):
    """All rays of one view: [height, width, 3] Rays."""
    return rays_lib.image_rays(self.height, self.width, np.float32(self.focal), self.cam_to_world[view],
                               self.pixel_center, xnp=np)
