"""Learned corrections of each training view: its camera pose and its photo's colours.

Real captures have poses off by a fraction of a degree and photos whose exposure and white balance change from one
to the next. Each training view v gets
  - a pose correction: a rotation w_v (axis-angle, world frame) about the camera's centre and a translation t_v of
    it, applied to the view's rays (origins + t_v, directions rotated by exp(w_v));
  - a colour correction: an affine map (I + A_v) c + b_v of the light the scene sends to the camera (not of the
    background composited behind transparent pixels), which absorbs exposure, white balance and tone changes
    without being able to explain geometry.
All start at zero (no correction). `anchored` removes their mean over the views after each update, so that the
corrected cameras cannot drift as a whole away from the given ones, and the scene's colours stay those of the
average photo: held-out views, rendered with their given poses and no colour correction, stay comparable.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnerf.core import rays as rays_lib


class ViewCorrections(NamedTuple):
  rotation: jnp.ndarray  # [num_views, 3] axis-angle, radians
  translation: jnp.ndarray  # [num_views, 3] in the scene's units
  color_matrix: jnp.ndarray  # [num_views, 3, 3] A_v of (I + A_v) c + b_v
  color_offset: jnp.ndarray  # [num_views, 3] b_v


def zeros(num_views):
  """No correction for `num_views` views."""
  return ViewCorrections(jnp.zeros((num_views, 3)), jnp.zeros((num_views, 3)), jnp.zeros((num_views, 3, 3)),
                         jnp.zeros((num_views, 3)))


def rotation_matrix(axis_angle):
  """Rodrigues' formula: [..., 3] axis-angle -> [..., 3, 3] rotation, with finite gradients at zero."""
  theta2 = jnp.sum(axis_angle**2, axis=-1)[..., None, None]
  small = theta2 < 1e-8
  theta = jnp.sqrt(jnp.where(small, 1.0, theta2))
  # sin(t)/t and (1 - cos(t))/t^2, by their Taylor series near zero.
  a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
  b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / jnp.where(small, 1.0, theta2))
  x, y, z = axis_angle[..., 0], axis_angle[..., 1], axis_angle[..., 2]
  zero = jnp.zeros_like(x)
  k = jnp.stack([jnp.stack([zero, -z, y], -1), jnp.stack([z, zero, -x], -1), jnp.stack([-y, x, zero], -1)], -2)
  return jnp.eye(3) + a * k + b * (k @ k)


def correct_rays(rays, corrections, view):
  """Rays of the views `view` [n] (int) with their pose corrections: Rays of [n, 3] fields (radii kept)."""
  rotation = rotation_matrix(corrections.rotation[view])  # [n, 3, 3]
  rotate = lambda d: jnp.einsum("nij,nj->ni", rotation, d)
  return rays_lib.Rays(origins=rays.origins + corrections.translation[view], directions=rotate(rays.directions),
                       viewdirs=rotate(rays.viewdirs), radii=rays.radii)


def correct_color(rgb, acc, background, corrections, view):
  """Rendered colours rgb [n, 3] (acc [n] opaque, composited onto background [3] or [n, 3]) with the colour
  corrections of views `view` [n] applied to the light of the scene, not to the background."""
  background = jnp.broadcast_to(background, rgb.shape)
  light = rgb - (1.0 - acc[:, None]) * background
  corrected = light + jnp.einsum("nij,nj->ni", corrections.color_matrix[view], light)
  return corrected + acc[:, None] * corrections.color_offset[view] + (1.0 - acc[:, None]) * background


def anchored(corrections):
  """The corrections less their mean over the views (see the module's docstring)."""
  return jax.tree.map(lambda a: a - jnp.mean(a, axis=0, keepdims=True) if a.shape[0] else a, corrections)


def corrected_poses(cam_to_world, corrections):
  """The refined [num_views, 3, 4] camera-to-world matrices of poses [num_views, 3, 4]."""
  rotation = rotation_matrix(corrections.rotation)
  return jnp.concatenate([rotation @ cam_to_world[:, :, :3],
                          (cam_to_world[:, :, 3] + corrections.translation)[..., None]], axis=-1)
