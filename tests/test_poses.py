"""Scene normalisation: orientation, centre and scale as a similarity that maps back exactly."""
import numpy as np
import pytest

from jaxnerf.core import poses as poses_lib


def random_rotation(rng):
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  return q * np.sign(np.linalg.det(q))


def inward_capture(rng, num=12, radius=3.0, centre=(0.5, -2.0, 1.0)):
  """Cameras on a sphere around `centre`, looking at it, with up tilted off +z by a random rotation."""
  tilt = random_rotation(rng)
  positions = rng.normal(size=(num, 3))
  positions[:, 2] = np.abs(positions[:, 2]) + 0.3  # upper hemisphere
  positions = radius * positions / np.linalg.norm(positions, axis=-1, keepdims=True)
  poses = np.stack([poses_lib.look_at_frame(p, np.array([0.0, 0.0, 1.0]), p) for p in positions])
  return poses_lib.transform_poses(np.block([[tilt, np.array(centre)[:, None]], [np.zeros((1, 3)), 1.0]]), poses), tilt


def test_rotation_between_turns_a_into_b():
  rng = np.random.default_rng(0)
  for _ in range(20):
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    rotation = poses_lib.rotation_between(a, b)
    np.testing.assert_allclose(rotation @ a, b, atol=1e-12)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
  np.testing.assert_allclose(poses_lib.rotation_between(a, -a) @ a, -a, atol=1e-12)


def test_normalisation_orients_centres_scales_and_maps_back():
  rng = np.random.default_rng(1)
  poses, tilt = inward_capture(rng)
  scene_from_world, scene_poses = poses_lib.normalize_scene(poses)
  centres = scene_poses[:, :, 3]
  # The sphere's centre goes to the origin and the cameras (all at the same distance) to radius 1.
  np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 1.0, atol=1e-9)
  np.testing.assert_allclose(poses_lib.nearest_point_to_axes(scene_poses), 0.0, atol=1e-9)
  up = scene_poses[:, :, 1].sum(0)
  np.testing.assert_allclose(up / np.linalg.norm(up), [0.0, 0.0, 1.0], atol=1e-12)
  # Rigid: pairwise distances scale by one factor, rotations stay rotations.
  world_distances = np.linalg.norm(poses[:, None, :, 3] - poses[None, :, :, 3], axis=-1)
  scene_distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
  np.testing.assert_allclose(scene_distances * 3.0, world_distances, atol=1e-9)
  np.testing.assert_allclose(scene_poses[:, :, :3] @ np.swapaxes(scene_poses[:, :, :3], 1, 2), np.eye(3)[None].repeat(
      len(poses), 0), atol=1e-12)
  back = poses_lib.transform_poses(np.linalg.inv(scene_from_world), scene_poses)
  np.testing.assert_allclose(back, poses, atol=1e-12)


def test_forward_facing_capture_centres_on_the_cameras():
  rng = np.random.default_rng(2)
  positions = np.concatenate([rng.uniform(-1, 1, size=(10, 2)), np.zeros((10, 1))], axis=1)
  poses = np.stack([np.concatenate([np.eye(3), p[:, None]], axis=1) for p in positions])
  assert not poses_lib.axes_are_convergent(poses)
  _, scene_poses = poses_lib.normalize_scene(poses)
  np.testing.assert_allclose(scene_poses[:, :, 3].mean(0), 0.0, atol=1e-12)
  assert np.max(np.linalg.norm(scene_poses[:, :, 3], axis=-1)) == pytest.approx(1.0)
