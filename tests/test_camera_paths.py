"""Video camera paths against closed forms."""
import numpy as np

from jaxnerf.core import camera_paths
from jaxnerf.core import poses as poses_lib


def assert_rigid(poses):
  rotations = poses[:, :, :3]
  np.testing.assert_allclose(rotations @ np.swapaxes(rotations, 1, 2), np.broadcast_to(np.eye(3), rotations.shape),
                             atol=1e-9)
  np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-9)


def test_orbit_of_cameras_on_a_circle_is_that_circle():
  centre, radius, height = np.array([0.3, -0.2, 0.1]), 4.0, 2.0
  angles = np.linspace(0, 2 * np.pi, 9, endpoint=False) + 0.2
  positions = centre + np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(9, height)], axis=-1)
  poses = np.stack([poses_lib.look_at_frame(p - centre, np.array([0.0, 0.0, 1.0]), p) for p in positions])
  path = camera_paths.orbit_path(poses, 40)
  assert path.shape == (40, 3, 4)
  assert_rigid(path)
  offsets = path[:, :, 3] - centre
  np.testing.assert_allclose(offsets[:, 2], height, atol=1e-9)
  np.testing.assert_allclose(np.linalg.norm(offsets[:, :2], axis=-1), radius, atol=1e-9)
  np.testing.assert_allclose(path[0, :, 3], positions[0], atol=1e-9)  # starts beside the first camera
  # Every frame looks at the centre (down its -z axis) with the world up in its y-z plane.
  np.testing.assert_allclose(path[:, :, 2], offsets / np.linalg.norm(offsets, axis=-1, keepdims=True), atol=1e-9)
  np.testing.assert_allclose(path[:, 2, 0], 0.0, atol=1e-9)
  # Equal steps in angle: consecutive frames are the same distance apart.
  steps = np.linalg.norm(np.diff(path[:, :, 3], axis=0), axis=-1)
  np.testing.assert_allclose(steps, 2 * radius * np.sin(np.pi / 40), rtol=1e-9)


def test_spiral_around_the_identity_camera():
  # Recentred forward-facing rig: cameras spread on a 3x3 grid around the origin, looking down -z.
  grid = np.array([(x, y, 0.25 * x) for x in (-0.4, 0.0, 0.4) for y in (-0.2, 0.0, 0.2)])
  poses = np.stack([np.concatenate([np.eye(3), p[:, None]], axis=1) for p in grid])
  bounds = np.tile([[1.5, 10.0]], (9, 1))
  path = camera_paths.spiral_path(poses, bounds, 120, num_rotations=2, z_rate=0.5)
  assert path.shape == (120, 3, 4)
  assert_rigid(path)
  radii = np.percentile(np.abs(grid), 90, axis=0)
  theta = np.linspace(0, 4 * np.pi, 120, endpoint=False)
  expected = np.stack([np.cos(theta), -np.sin(theta), -np.sin(0.5 * theta)], axis=-1) * radii
  np.testing.assert_allclose(path[:, :, 3], expected, atol=1e-12)
  # All frames look at one focus point on the -z axis, at the harmonic mean of near and far weighted 3:1 to far.
  focus_depth = 1.0 / (0.25 / (0.9 * 1.5) + 0.75 / (5.0 * 10.0))
  to_focus = np.array([0.0, 0.0, -focus_depth]) - path[:, :, 3]
  np.testing.assert_allclose(-path[:, :, 2], to_focus / np.linalg.norm(to_focus, axis=-1, keepdims=True),
                             atol=1e-12)
