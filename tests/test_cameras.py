"""Per-view intrinsics and lens models: rays against float64 numpy projections of the same cameras."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf.core import rays as rays_lib
from jaxnerf.data.views import Views

H, W = 30, 40
INTRINSICS = np.array([36.0, 41.0, 22.5, 13.0])  # fx != fy, principal point off the centre
DISTORTIONS = {  # DISTORTION_KEYS order: k1, k2, k3, k4, p1, p2
    "opencv": np.array([-0.28, 0.09, -0.01, 0.0, 0.002, -0.0015]),
    "opencv_fisheye": np.array([0.05, -0.02, 0.01, -0.003, 0.0, 0.0]),
}


def distort64(x, y, distortion, camera_model):
  """float64 forward lens model on normalised coordinates (OpenCV's formulas, written out independently)."""
  k1, k2, k3, k4, p1, p2 = distortion
  if camera_model == "opencv":
    r2 = x ** 2 + y ** 2
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x ** 2),
            y * radial + p1 * (r2 + 2 * y ** 2) + 2 * p2 * x * y)
  r = np.hypot(x, y)
  theta = np.arctan(r)
  theta_d = theta * (1 + k1 * theta ** 2 + k2 * theta ** 4 + k3 * theta ** 6 + k4 * theta ** 8)
  scale = np.where(r > 0, theta_d / np.where(r > 0, r, 1), 1.0)
  return x * scale, y * scale


def random_pose(rng):
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  q *= np.sign(np.linalg.det(q))
  return np.concatenate([q, rng.normal(size=(3, 1))], axis=1)


def project64(points, pose, intrinsics, distortion, camera_model):
  """Pixel coordinates (x, y), pixel centres at k + 0.5, of world points seen by a camera; float64."""
  camera = (points - pose[:, 3]) @ pose[:, :3]  # world -> camera axes (x right, y up, looking down -z)
  x, y = camera[..., 0] / -camera[..., 2], -camera[..., 1] / -camera[..., 2]
  if camera_model != "pinhole":
    x, y = distort64(x, y, distortion, camera_model)
  fx, fy, cx, cy = intrinsics
  return fx * x + cx, fy * y + cy


@pytest.mark.parametrize("camera_model", ["opencv", "opencv_fisheye"])
def test_distort_of_undistort_is_identity_over_the_image(camera_model):
  fx, fy, cx, cy = INTRINSICS
  x, y = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
  xd, yd = (x - cx) / fx, (y - cy) / fy
  u, v = rays_lib.undistort(xd.astype(np.float32), yd.astype(np.float32),
                            DISTORTIONS[camera_model].astype(np.float32), camera_model)
  assert u.dtype == np.float32
  back_x, back_y = distort64(u.astype(np.float64), v.astype(np.float64), DISTORTIONS[camera_model], camera_model)
  np.testing.assert_allclose(back_x * fx + cx, x, atol=2e-4)
  np.testing.assert_allclose(back_y * fy + cy, y, atol=2e-4)
  assert np.max(np.abs(u - xd)) > 0.01  # the lens does something over this image


@pytest.mark.parametrize("camera_model", ["pinhole", "opencv", "opencv_fisheye"])
def test_rays_project_back_to_their_pixels(camera_model):
  rng = np.random.default_rng(1)
  pose = random_pose(rng)
  distortion = DISTORTIONS.get(camera_model, np.zeros(6))
  x, y = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
  rays = rays_lib.lens_rays(x, y, INTRINSICS.astype(np.float32), pose.astype(np.float32),
                            distortion.astype(np.float32), camera_model)
  depth = rng.uniform(1, 5, size=(H, W, 1))
  points = rays.origins.astype(np.float64) + depth * rays.directions.astype(np.float64)
  px, py = project64(points, pose, INTRINSICS, distortion, camera_model)
  np.testing.assert_allclose(px, x + 0.5, atol=2e-3)
  np.testing.assert_allclose(py, y + 0.5, atol=2e-3)
  # Directions have camera-space z = -1 (depth along the ray) and unit viewdirs.
  np.testing.assert_allclose(rays.directions @ pose[:, 2], -1.0, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(rays.viewdirs, axis=-1), 1.0, atol=1e-6)


def test_jax_and_numpy_lens_rays_agree():
  x, y = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
  pose = random_pose(np.random.default_rng(2)).astype(np.float32)
  for model, distortion in DISTORTIONS.items():
    args = (INTRINSICS.astype(np.float32), pose, distortion.astype(np.float32), model)
    host = rays_lib.lens_rays(x, y, *args)
    device = jax.jit(lambda a, b: rays_lib.lens_rays(a, b, *args, xnp=jnp))(x, y)
    np.testing.assert_allclose(device.directions, host.directions, atol=1e-5)


def test_views_use_each_views_intrinsics_and_scale_them_for_videos():
  rng = np.random.default_rng(4)
  poses = np.stack([random_pose(rng) for _ in range(2)]).astype(np.float32)
  intrinsics = np.stack([INTRINSICS, INTRINSICS * [1.1, 0.9, 1.0, 1.2]]).astype(np.float32)
  distortion = np.stack([DISTORTIONS["opencv"]] * 2).astype(np.float32)
  views = Views(images=np.zeros((2, H, W, 3), np.float32), cam_to_world=poses, focal=36.0, near=0.1, far=5.0,
                names=["a", "b"], intrinsics=intrinsics, camera_model="opencv", distortion=distortion)
  for view in range(2):
    rays = views.image_rays(view)
    points = rays.origins + 2.0 * rays.directions
    px, py = project64(points.astype(np.float64), poses[view].astype(np.float64), intrinsics[view].astype(np.float64),
                       DISTORTIONS["opencv"], "opencv")
    x, y = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    np.testing.assert_allclose(px, x, atol=2e-3)
    np.testing.assert_allclose(py, y, atol=2e-3)
    picked = views.pixel_rays(np.full(3, view), np.array([0, 5, 39]), np.array([0, 29, 7]))
    np.testing.assert_array_equal(picked.directions, rays.directions[[0, 29, 7], [0, 5, 39]])
  half = views.camera_rays(poses[1], factor=2, view=1)
  points = half.origins + 2.0 * half.directions
  px, py = project64(points.astype(np.float64), poses[1].astype(np.float64), intrinsics[1] / 2.0,
                     DISTORTIONS["opencv"], "opencv")
  np.testing.assert_allclose(px, np.meshgrid(np.arange(W // 2) + 0.5, np.arange(H // 2))[0], atol=2e-3)
  np.testing.assert_allclose(py, np.meshgrid(np.arange(W // 2), np.arange(H // 2) + 0.5)[1], atol=2e-3)
