import jax.numpy as jnp
import numpy as np

from jaxnerf.core import rays
from conftest import random_rotation


def reference_rays(height, width, focal, cam_to_world, offset):
  """Per-pixel loop in float64."""
  origins = np.zeros((height, width, 3))
  directions = np.zeros((height, width, 3))
  for i in range(height):
    for j in range(width):
      d_cam = np.array([(j + offset - width / 2) / focal, -(i + offset - height / 2) / focal, -1.0])
      directions[i, j] = cam_to_world[:3, :3] @ d_cam
      origins[i, j] = cam_to_world[:3, 3]
  return origins, directions


def test_image_rays_match_reference(rng):
  pose = np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], axis=1)
  for pixel_center, offset in [(True, 0.5), (False, 0.0)]:
    out = rays.image_rays(6, 5, 7.5, jnp.asarray(pose, jnp.float32), pixel_center=pixel_center, xnp=jnp)
    origins, directions = reference_rays(6, 5, 7.5, pose, offset)
    np.testing.assert_allclose(out.origins, origins, atol=1e-6)
    np.testing.assert_allclose(out.directions, directions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.viewdirs, directions / np.linalg.norm(directions, axis=-1, keepdims=True),
                               atol=1e-6)


def test_points_on_rays_project_back_to_their_pixels(rng):
  """Brute-force inverse: a point at any distance along a pixel's ray projects onto that pixel's centre."""
  rotation = random_rotation(rng)
  position = rng.normal(size=3)
  pose = np.concatenate([rotation, position[:, None]], axis=1)
  height, width, focal = 4, 7, 3.0
  r = rays.image_rays(height, width, focal, pose)
  points = r.origins + 2.7 * r.directions
  cam = (points - position) @ rotation  # world -> camera: R^T (p - o)
  # Camera space: x right, y up, looking down -z; depth along -z equals t because d_cam.z = -1.
  np.testing.assert_allclose(-cam[..., 2], 2.7, rtol=1e-6)
  u = focal * cam[..., 0] / -cam[..., 2] + width / 2
  v = -focal * cam[..., 1] / -cam[..., 2] + height / 2
  jj, ii = np.meshgrid(np.arange(width), np.arange(height))
  np.testing.assert_allclose(u, jj + 0.5, atol=1e-5)
  np.testing.assert_allclose(v, ii + 0.5, atol=1e-5)


def test_principal_ray_is_camera_minus_z():
  pose = np.eye(4)[:3]
  # Without the half-pixel offset, pixel (W/2, H/2) lies on the optical axis.
  r = rays.lens_rays(np.float32(4), np.float32(3), np.array([10.0, 10.0, 4.0, 3.0]), pose, pixel_center=False)
  np.testing.assert_allclose(r.viewdirs, [0, 0, -1], atol=1e-7)


def test_broadcasting_over_views(rng):
  poses = np.stack([np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1) for _ in range(3)])
  x = np.array([0.0, 3.0, 5.0])
  y = np.array([1.0, 2.0, 0.0])
  intrinsics = np.array([5.0, 5.0, 3.0, 2.0])
  batched = rays.lens_rays(x, y, intrinsics, poses)
  for k in range(3):
    single = rays.lens_rays(x[k], y[k], intrinsics, poses[k])
    np.testing.assert_allclose(batched.directions[k], single.directions, rtol=1e-12)
    np.testing.assert_allclose(batched.origins[k], poses[k][:, 3])
