"""LLFF loading, recentring, spherify and NDC rays, against closed forms and float64 references."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_FERN, needs_shared_fern, random_rotation, write_llff_scene
from jaxnerf.core import rays as rays_lib
from jaxnerf.data import llff
from jaxnerf.core import poses as poses_lib
from jaxnerf.errors import DataError

def random_poses(rng, n=6):
  rotations = np.stack([random_rotation(rng) for _ in range(n)])
  return np.concatenate([rotations, rng.normal(size=(n, 3, 1))], axis=-1)


def ndc_point(points, width, height, focal, near):
  """The NDC projection of [..., 3] points (float64), written out from its definition."""
  x, y, z = points[..., 0], points[..., 1], points[..., 2]
  return np.stack([-focal / (width / 2) * x / z, -focal / (height / 2) * y / z, 1 + 2 * near / z], axis=-1)


def test_ndc_principal_ray_is_the_z_axis():
  rays = rays_lib.Rays(np.zeros((1, 3)), np.array([[0.0, 0.0, -1.0]]), np.array([[0.0, 0.0, -1.0]]))
  ndc = rays_lib.to_ndc(rays, 640.0, 480.0, 500.0, near=1.0)
  np.testing.assert_allclose(ndc.origins, [[0.0, 0.0, -1.0]], atol=1e-12)  # starts on the near plane, z = -1
  np.testing.assert_allclose(ndc.directions, [[0.0, 0.0, 2.0]], atol=1e-12)  # reaches z = +1 at infinity
  np.testing.assert_array_equal(ndc.viewdirs, rays.viewdirs)


def test_ndc_rays_pass_through_projected_world_points(rng):
  width, height, focal, near = 252.0, 189.0, 203.8, 1.0
  origins = rng.normal(scale=0.3, size=(50, 3))
  directions = np.concatenate([rng.normal(scale=0.4, size=(50, 2)), -np.ones((50, 1))], axis=-1)
  ndc = rays_lib.to_ndc(rays_lib.Rays(origins, directions, directions), width, height, focal, near)
  # A point on the near plane lands at ndc z = -1: the NDC origin is the projection of that point.
  t_near = (-near - origins[:, 2]) / directions[:, 2]
  np.testing.assert_allclose(ndc.origins, ndc_point(origins + t_near[:, None] * directions, width, height, focal,
                                                    near), rtol=1e-10)
  np.testing.assert_allclose(ndc.origins[:, 2], -1.0, atol=1e-12)
  for t in (1.5, 3.0, 20.0, 1e3):
    point = ndc_point(origins + (t_near + t)[:, None] * directions, width, height, focal, near)
    s = (point[:, 2] - ndc.origins[:, 2]) / ndc.directions[:, 2]
    assert np.all((s > 0) & (s < 1))
    np.testing.assert_allclose(ndc.origins + s[:, None] * ndc.directions, point, rtol=1e-9, atol=1e-9)
  at_infinity = (ndc.origins + ndc.directions)[:, :2]
  np.testing.assert_allclose(at_infinity, ndc_point(directions, width, height, focal, near)[:, :2], rtol=1e-10)


def test_llff_axes_to_opengl():
  # An LLFF camera whose [down, right, back] axes are world -y, +x, +z is the identity camera in OpenGL axes.
  pose = np.array([[0.0, 1.0, 0.0, 5.0, 100.0], [-1.0, 0.0, 0.0, 6.0, 200.0], [0.0, 0.0, 1.0, 7.0, 300.0]])
  np.testing.assert_array_equal(llff.llff_to_opengl(pose), [[1, 0, 0, 5], [0, 1, 0, 6], [0, 0, 1, 7]])


def test_recentring_is_idempotent_and_centres_the_average_pose(rng):
  poses = random_poses(rng)
  recentred = poses_lib.recenter_poses(poses)
  np.testing.assert_allclose(poses_lib.average_pose(recentred), np.eye(3, 4), atol=1e-12)
  np.testing.assert_allclose(poses_lib.recenter_poses(recentred), recentred, atol=1e-12)
  # Recentring is a rigid change of frame: distances between cameras and relative rotations are kept.
  def distances(p):
    return np.linalg.norm(p[:, None, :, 3] - p[None, :, :, 3], axis=-1)

  np.testing.assert_allclose(distances(recentred), distances(poses), atol=1e-12)
  np.testing.assert_allclose(recentred[0, :, :3].T @ recentred[1, :, :3], poses[0, :, :3].T @ poses[1, :, :3],
                             atol=1e-12)


def test_average_pose_of_a_known_rig():
  # Three cameras at x = -1, 0, 1 all looking down -z: the average is the middle one.
  poses = np.stack([np.concatenate([np.eye(3), [[x], [2.0], [3.0]]], axis=1) for x in (-1.0, 0.0, 1.0)])
  np.testing.assert_allclose(poses_lib.average_pose(poses), poses[1], atol=1e-12)


def look_at_centre(position, centre, up):
  return poses_lib.look_at_frame(position - centre, up, position)


def test_spherify_puts_cameras_on_the_unit_sphere_facing_the_centre(rng):
  centre, radius = np.array([0.5, -1.0, 2.0]), 3.0
  directions = rng.normal(size=(12, 3))
  directions[:, 2] = np.abs(directions[:, 2])  # upper hemisphere, like a capture around an object
  positions = centre + radius * directions / np.linalg.norm(directions, axis=-1, keepdims=True)
  poses = np.stack([look_at_centre(p, centre, np.array([0.0, 0.0, 1.0])) for p in positions])
  bounds = np.tile([[2.0, 4.0]], (12, 1))
  np.testing.assert_allclose(poses_lib.nearest_point_to_axes(poses), centre, atol=1e-9)
  spherified, new_bounds = llff.spherify_poses(poses, bounds)
  np.testing.assert_allclose(np.linalg.norm(spherified[:, :, 3], axis=-1), 1.0, atol=1e-9)
  # Each camera still looks at the centre, now the origin: its back axis points along its position.
  np.testing.assert_allclose(spherified[:, :, 2], spherified[:, :, 3], atol=1e-9)
  np.testing.assert_allclose(new_bounds, bounds / radius, rtol=1e-9)
  # The new z axis is the mean direction from the centre to the cameras.
  mean_direction = spherified[:, :, 3].mean(0)
  np.testing.assert_allclose(mean_direction / np.linalg.norm(mean_direction), [0.0, 0.0, 1.0], atol=1e-9)


def test_split_holds_out_every_eighth_image():
  np.testing.assert_array_equal(llff.split_indices(20, "test", 8), [0, 8, 16])
  np.testing.assert_array_equal(llff.split_indices(20, "val", 8), [0, 8, 16])
  train = llff.split_indices(20, "train", 8)
  assert len(train) == 17 and not set(train) & {0, 8, 16}


@pytest.fixture
def small_scene(tmp_path, rng):
  """A 5-view LLFF scene with tiny 8x6 images in images_2/ (16x12 "full size")."""
  return write_llff_scene(tmp_path / "scene", rng)


def test_image_folder_prefers_the_largest_divisor(small_scene):
  assert llff.image_folder(str(small_scene), 2) == (str(small_scene / "images_2"), 1)
  assert llff.image_folder(str(small_scene), 4) == (str(small_scene / "images_2"), 2)
  with pytest.raises(DataError, match="no image folder for factor 3"):
    llff.image_folder(str(small_scene), 3)
  shutil.copytree(small_scene / "images_2", small_scene / "images")
  assert llff.image_folder(str(small_scene), 3) == (str(small_scene / "images"), 3)


def test_small_scene_loads_with_scaled_focal_and_area_downsampling(small_scene):
  images, poses, bounds, focal, names = llff.load_scene(str(small_scene), factor=4)
  assert images.shape == (5, 3, 4, 3) and names == [f"im{i}.png" for i in range(5)]
  assert focal == pytest.approx(13.0 / 4)
  source = np.asarray(Image.open(small_scene / "images_2" / "im3.png"), np.float64) / 255
  np.testing.assert_allclose(images[3], source.reshape(3, 2, 4, 2, 3).mean(axis=(1, 3)), atol=1e-6)
  assert bounds.min() == pytest.approx(1 / llff.BOUND_MARGIN)


@pytest.mark.parametrize("rows, message", [
    (np.zeros((5, 15)), r"expected an array of shape \[num_images, 17\].*got shape \[5, 15\]"),
    (np.zeros((0, 17)), r"got shape \[0, 17\]"),
])
def test_bad_poses_bounds(small_scene, rows, message):
  np.save(small_scene / "poses_bounds.npy", rows)
  with pytest.raises(DataError, match=message):
    llff.load_scene(str(small_scene), factor=2)


def test_image_count_must_match_the_poses(small_scene):
  os.remove(small_scene / "images_2" / "im4.png")
  with pytest.raises(DataError, match="has 4 images, expected 5"):
    llff.load_scene(str(small_scene), factor=2)


@needs_shared_fern
def test_fern_split_and_camera():
  test = llff.load_split(SHARED_FERN, "test", factor=16)
  assert test.names == ["test/image000", "test/image008", "test/image016"]
  assert test.images.shape == (3, 189, 252, 3) and (test.near, test.far) == (0.0, 1.0)
  assert test.focal == pytest.approx(3260.526333 * 252 / 4032, rel=1e-6)
  source = np.asarray(Image.open(os.path.join(SHARED_FERN, "images_8", "image008.png")), np.float64)[..., :3]
  np.testing.assert_allclose(test.images[1], source.reshape(189, 2, 252, 2, 3).mean(axis=(1, 3)) / 255, atol=1e-6)
  train = llff.load_split(SHARED_FERN, "train", factor=16)
  assert len(train) == 17
  # All 20 recentred poses average to the identity camera; NDC rays of the train views start on z = -1.
  everything = np.concatenate([train.cam_to_world, test.cam_to_world]).astype(np.float64)
  np.testing.assert_allclose(poses_lib.average_pose(everything), np.eye(3, 4), atol=1e-5)
  np.testing.assert_allclose(train.image_rays(0).origins[..., 2], -1.0, atol=1e-5)
