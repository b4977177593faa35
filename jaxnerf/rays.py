"""Camera rays: one ray per pixel of a pinhole camera.

Conventions (Blender / OpenGL): the camera looks down its -z axis, +y is up and +x is right; image rows grow
downwards. `cam_to_world` matrices are [..., 3, 4] (rotation | translation). Directions are *not* normalised:
their camera-space z component is -1, so a sample distance `t` along a ray is the depth in front of the camera,
which is how Blender's near/far bounds (2 and 6) are defined. `viewdirs` are the unit-length directions fed to
the network.

Every function takes `xnp` (numpy or jax.numpy) so that the same code builds rays on the host for data loading
and inside jitted functions.
"""
from typing import NamedTuple

import numpy as np


class Rays(NamedTuple):
  origins: "np.ndarray"  # [..., 3]
  directions: "np.ndarray"  # [..., 3], camera-space z = -1
  viewdirs: "np.ndarray"  # [..., 3], unit length


def pixel_grid(height, width, xnp=np):
  """Integer pixel coordinates of an image.

  Returns:
    x, y: [height, width] float32 column and row indices.
  """
  x, y = xnp.meshgrid(xnp.arange(width, dtype=xnp.float32), xnp.arange(height, dtype=xnp.float32), indexing="xy")
  return x, y


def pinhole_rays(x, y, focal, principal_point, cam_to_world, pixel_center=True, xnp=np):
  """Rays through pixels of a pinhole camera.

  Args:
    x, y: [...] pixel column and row indices (float).
    focal: scalar or [...] focal length in pixels.
    principal_point: (cx, cy) in pixels, scalars or [...] arrays.
    cam_to_world: [..., 3, 4] camera-to-world matrices, broadcastable against x.
    pixel_center: shoot rays through pixel centres (x + 0.5) rather than pixel corners. The original NeRF code
      used corners; centres are geometrically right.
    xnp: numpy or jax.numpy.

  Returns:
    Rays with origins, directions and viewdirs of shape [..., 3].
  """
  offset = 0.5 if pixel_center else 0.0
  cx, cy = principal_point
  cam_dirs = xnp.stack(
      [(x + offset - cx) / focal, -(y + offset - cy) / focal, -xnp.ones_like(x)], axis=-1)  # [..., 3]
  rotation = cam_to_world[..., :3, :3]
  directions = xnp.sum(cam_dirs[..., None, :] * rotation, axis=-1)  # rotation @ cam_dir
  origins = xnp.broadcast_to(cam_to_world[..., :3, 3], directions.shape)
  viewdirs = directions / xnp.linalg.norm(directions, axis=-1, keepdims=True)
  return Rays(origins=origins, directions=directions, viewdirs=viewdirs)


def image_rays(height, width, focal, cam_to_world, pixel_center=True, xnp=np):
  """All rays of one image, principal point at the image centre.

  Args:
    cam_to_world: [3, 4].

  Returns:
    Rays of shape [height, width, 3].
  """
  x, y = pixel_grid(height, width, xnp=xnp)
  return pinhole_rays(x, y, focal, (width / 2.0, height / 2.0), cam_to_world, pixel_center, xnp=xnp)
