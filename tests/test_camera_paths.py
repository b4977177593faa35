"""Video camera paths against closed forms."""
import json

import numpy as np
import pytest

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


def test_quaternions_round_trip_and_match_axis_angle(rng):
  from conftest import random_rotation
  for _ in range(20):
    rotation = random_rotation(rng)
    q = camera_paths.rotation_to_quaternion(rotation)
    assert q[0] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
    np.testing.assert_allclose(camera_paths.quaternion_to_rotation(q), rotation, atol=1e-12)
  # A half turn about an axis (w = 0, where the trace-based formula divides by nearly zero).
  axis = np.array([1.0, 2.0, 2.0]) / 3.0
  half_turn = 2 * np.outer(axis, axis) - np.eye(3)
  np.testing.assert_allclose(np.abs(camera_paths.rotation_to_quaternion(half_turn)), [0, *axis], atol=1e-12)


def test_hermite_spline_through_keyframes_exact_on_lines_and_smooth(rng):
  times = np.array([0.0, 0.7, 1.0, 2.5, 3.0])
  values = rng.normal(size=(5, 2))
  np.testing.assert_allclose(camera_paths.hermite_spline(times, values, times), values, atol=1e-12)
  line = np.stack([3 * times - 1, -times], axis=-1)
  at = np.linspace(-1.0, 4.0, 101)
  expected = np.stack([3 * np.clip(at, 0, 3) - 1, -np.clip(at, 0, 3)], axis=-1)  # held outside the keyframes
  np.testing.assert_allclose(camera_paths.hermite_spline(times, line, at), expected, atol=1e-12)
  # C1: slopes just left and right of an inner keyframe agree.
  eps = 1e-6
  left = (camera_paths.hermite_spline(times, values, [1.0]) - camera_paths.hermite_spline(times, values, [1 - eps]))
  right = (camera_paths.hermite_spline(times, values, [1 + eps]) - camera_paths.hermite_spline(times, values, [1.0]))
  np.testing.assert_allclose(left / eps, right / eps, rtol=1e-4, atol=1e-4)


def test_keyframe_path_turns_evenly_and_stays_rigid():
  """Two keyframes a quarter turn apart about the world z axis, 2 s at 10 fps: 21 rigid frames, the middle one
  half way (45 degrees), the positions along the line between the keyframes, fields of view in between."""
  turn = lambda angle: np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
  keyframes = np.stack([np.concatenate([turn(a), p[:, None]], axis=1)
                        for a, p in [(0.0, np.array([1.0, 0, 0])), (np.pi / 2, np.array([3.0, 2.0, 0]))]])
  poses, fov = camera_paths.interpolate_keyframes(keyframes, [40.0, 60.0], [1.0, 3.0], fps=10)
  assert poses.shape == (21, 3, 4) and fov.shape == (21,)
  assert_rigid(poses)
  np.testing.assert_allclose(poses[[0, -1]], keyframes, atol=1e-12)
  np.testing.assert_allclose(poses[10, :, :3], turn(np.pi / 4), atol=1e-12)
  np.testing.assert_allclose(poses[:, 1, 3], poses[:, 0, 3] - 1.0, atol=1e-12)  # on the line y = x - 1
  assert (np.diff(poses[:, 0, 3]) > 0).all() and (np.diff(fov) > 0).all() and fov[10] == pytest.approx(50.0)
  # Yaw angles increase monotonically.
  assert (np.diff(np.arctan2(poses[:, 1, 0], poses[:, 0, 0])) > 0).all()


def test_camera_path_file_round_trip_and_errors(tmp_path, rng):
  from conftest import random_rotation
  from jaxnerf.errors import ConfigError
  from jaxnerf.run import camera_path_files
  poses = np.stack([np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], axis=1) for _ in range(3)])
  file = tmp_path / "path.json"
  file.write_text(camera_path_files.to_json(poses, [45.0, 50.0, 55.5], [0.0, 1.5, 4.0], fps=24))
  loaded_poses, fov, times, fps = camera_path_files.load(str(file))
  np.testing.assert_allclose(loaded_poses, poses, atol=1e-6)
  np.testing.assert_allclose(fov, [45.0, 50.0, 55.5])
  np.testing.assert_allclose(times, [0.0, 1.5, 4.0])
  assert fps == 24
  document = json.loads(file.read_text())
  for change, message in [(lambda d: d.update(format="other"), "not a camera path"),
                          (lambda d: d.update(fps=0), '"fps" must be a positive number'),
                          (lambda d: d["keyframes"][1].update(time=5.0), "times must increase strictly"),
                          (lambda d: d["keyframes"][0].pop("fov_y_degrees"), "each keyframe needs"),
                          (lambda d: d["keyframes"][0].update(camera_to_world=[[1, 0], [0, 1]]), "3x4")]:
    bad = json.loads(json.dumps(document))
    change(bad)
    file.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=message):
      camera_path_files.load(str(file))
  with pytest.raises(ConfigError, match="cannot read it"):
    camera_path_files.load(str(tmp_path / "missing.json"))
