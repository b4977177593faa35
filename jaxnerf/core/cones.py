"""mip-NeRF's cones (Barron et al. 2021): each ray is a cone through its pixel's footprint, and each interval
[t0, t1] of it a conical frustum, described to the field by the Gaussian with the frustum's mean and covariance.

A ray o + t d with radius r (rays.Rays.radii, the cone's radius at t = 1) covers, at parameter t, the disk of
radius r t around o + t d perpendicular to d; the frustum of [t0, t1] is the cone's part between the planes
through o + t0 d and o + t1 d. Points uniform in it have t distributed with density proportional to t^2 on [t0,
t1] (the cross-section grows as t^2) and are uniform on each cross-section.
"""
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Gaussians(NamedTuple):
  means: jnp.ndarray  # [..., num_samples, 3]
  covs: jnp.ndarray  # [..., num_samples, 3] diagonals of the covariances, or [..., num_samples, 3, 3] in full


def frustum_moments(t0, t1, radii):
  """The moments of a conical frustum in its own axes, in mip-NeRF's numerically stable form (written with the
  interval's centre mu and half-width h, so that thin intervals far away lose no precision).

  Args:
    t0, t1: [...] interval endpoints, 0 <= t0 < t1.
    radii: [...] cone radii at t = 1 (broadcast against t0).

  Returns:
    t_mean, t_var: [...] mean and variance of t over the frustum (as the cross-sections weigh it).
    r_var: [...] variance of a point's offset from the axis along any one direction perpendicular to it.
  """
  mu, h = 0.5 * (t0 + t1), 0.5 * (t1 - t0)
  denom = 3.0 * mu ** 2 + h ** 2
  t_mean = mu + 2.0 * mu * h ** 2 / denom
  t_var = h ** 2 / 3.0 - (4.0 / 15.0) * h ** 4 * (12.0 * mu ** 2 - h ** 2) / denom ** 2
  r_var = radii ** 2 * (mu ** 2 / 4.0 + (5.0 / 12.0) * h ** 2 - (4.0 / 15.0) * h ** 4 / denom)
  return t_mean, t_var, r_var


def frustum_gaussians(origins, directions, radii, edges, diagonal=True, xnp=jnp):
  """The Gaussians of the conical frustums of each ray's intervals, in world coordinates.

  Args:
    origins, directions: [..., 3] rays (directions need not be unit length).
    radii: [..., 1] cone radii at t = 1, or None (thin rays: zero radii, the covariance is only along the ray).
    edges: [..., num_samples + 1] sorted interval endpoints.
    diagonal: return only the covariances' diagonals (all the integrated encoding needs).
    xnp: jax.numpy, or numpy (float64 checks).

  Returns:
    Gaussians with means [..., num_samples, 3] and covs [..., num_samples, 3] (diagonal) or [..., num_samples, 3,
    3]: t_var d d^T + r_var (I - d d^T / |d|^2).
  """
  radii = xnp.zeros_like(origins[..., :1]) if radii is None else radii
  t_mean, t_var, r_var = frustum_moments(edges[..., :-1], edges[..., 1:], radii)
  d = directions[..., None, :]  # [..., 1, 3]
  means = origins[..., None, :] + t_mean[..., None] * d
  norm2 = xnp.sum(d ** 2, axis=-1, keepdims=True)
  if diagonal:
    return Gaussians(means, t_var[..., None] * d ** 2 + r_var[..., None] * (1.0 - d ** 2 / norm2))
  outer = d[..., :, None] * d[..., None, :]  # [..., 1, 3, 3]
  perpendicular = np.eye(3, dtype=d.dtype) - outer / norm2[..., None]
  return Gaussians(means, t_var[..., None, None] * outer + r_var[..., None, None] * perpendicular)
