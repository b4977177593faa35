"""Pose math shared by the loaders and the camera paths. Poses are [..., 3, 4] camera-to-world matrices in the
OpenGL convention of rays.py (columns: right, up, back axes and the camera centre; the camera looks down -back).
"""
import numpy as np


def normalize(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def look_at_frame(back, up, position):
  """The [3, 4] camera-to-world matrix at `position` whose +z axis is along `back` and whose +y axis is as close
  to `up` as possible (OpenGL: the camera looks down -back)."""
  back = normalize(back)
  right = normalize(np.cross(up, back))
  return np.stack([right, np.cross(back, right), back, position], axis=-1)


def average_pose(poses):
  """The mean camera of [N, 3, 4] poses: at the mean position, looking along the mean viewing direction, with
  the mean up vector. Returns [3, 4]."""
  return look_at_frame(poses[:, :, 2].sum(0), poses[:, :, 1].sum(0), poses[:, :, 3].mean(0))


def to_homogeneous(poses):
  """[..., 3, 4] -> [..., 4, 4]."""
  bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), poses.shape[:-2] + (1, 4))
  return np.concatenate([poses, bottom], axis=-2)


def recenter_poses(poses):
  """Express [N, 3, 4] poses in the frame of their average pose, so that the average camera sits at the origin
  looking down -z (the frame NDC rays assume). Recentring recentred poses changes nothing."""
  world_from_average = to_homogeneous(average_pose(poses))
  return (np.linalg.inv(world_from_average) @ to_homogeneous(poses))[:, :3, :]


def nearest_point_to_axes(poses):
  """The point with the least summed squared distance to the optical axes of [N, 3, 4] poses. Returns [3]."""
  directions = normalize(poses[:, :, 2])
  projectors = np.eye(3) - directions[:, :, None] * directions[:, None, :]  # onto each axis's normal plane
  return np.linalg.solve(projectors.sum(0), (projectors @ poses[:, :, 3, None]).sum(0))[:, 0]


def rotation_between(a, b):
  """The [3, 3] rotation by the smallest angle that turns unit vector `a` into unit vector `b` (Rodrigues)."""
  axis = np.cross(a, b)
  cos = float(np.dot(a, b))
  if np.linalg.norm(axis) < 1e-12:
    if cos > 0:
      return np.eye(3)
    # Opposite vectors: a half turn about any axis perpendicular to `a`.
    perpendicular = normalize(np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0]))
    return 2.0 * np.outer(perpendicular, perpendicular) - np.eye(3)
  cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
  return np.eye(3) + cross + cross @ cross / (1.0 + cos)


def faces_forward(poses, max_angle_degrees=40.0):
  """Whether every optical axis of [N, 3, 4] poses lies within `max_angle_degrees` of their mean direction: a
  forward-facing capture (LLFF-style, even when the axes converge a little on the subject), not one around it."""
  directions = normalize(poses[:, :, 2])
  mean = normalize(directions.sum(0))
  return bool(np.all(directions @ mean >= np.cos(np.radians(max_angle_degrees))))


def axes_are_convergent(poses, max_condition=1e3):
  """Whether the optical axes of [N, 3, 4] poses meet near a point (an inward-facing capture) rather than being
  near-parallel (forward-facing), where the nearest point to them is ill-defined and far away."""
  directions = normalize(poses[:, :, 2])
  projectors = np.eye(3) - directions[:, :, None] * directions[:, None, :]
  if np.linalg.cond(projectors.sum(0)) > max_condition:
    return False
  # The point must be in front of most cameras (along -back), not behind them.
  in_front = np.sum((nearest_point_to_axes(poses) - poses[:, :, 3]) * -directions, axis=-1) > 0
  return np.mean(in_front) > 0.5


def normalize_scene(poses, centre="auto"):
  """Orient, centre and scale a capture: the mean camera up becomes +z, the centre the origin, and the farthest
  camera lands at distance 1 from it.

  Args:
    poses: [N, 3, 4] camera-to-world matrices of all the capture's views.
    centre: "axes" (the point nearest all optical axes), "cameras" (the mean camera centre) or "auto" (axes for
      inward-facing captures, else cameras).

  Returns:
    scene_from_world: [4, 4] similarity (scale times rotation, translation) mapping input points into the scene.
    poses: [N, 3, 4] the poses in the scene frame (rotations stay rotations).
  """
  up = normalize(poses[:, :, 1].sum(0))
  rotation = rotation_between(up, np.array([0.0, 0.0, 1.0]))
  if centre == "auto":
    centre = "axes" if axes_are_convergent(poses) else "cameras"
  point = nearest_point_to_axes(poses) if centre == "axes" else poses[:, :, 3].mean(0)
  radius = np.max(np.linalg.norm(poses[:, :, 3] - point, axis=-1))
  scale = 1.0 / radius if radius > 0 else 1.0
  scene_from_world = np.eye(4)
  scene_from_world[:3, :3] = scale * rotation
  scene_from_world[:3, 3] = -scale * rotation @ point
  return scene_from_world, transform_poses(scene_from_world, poses)


def transform_poses(similarity, poses):
  """[..., 3, 4] poses moved by a [4, 4] similarity transform; their rotations stay rotations (the scale is
  divided out of the rotation block)."""
  scale = np.cbrt(np.linalg.det(similarity[:3, :3]))
  rotation = similarity[:3, :3] / scale
  return np.concatenate([rotation @ poses[..., :3, :3], (similarity[:3, :3] @ poses[..., :3, 3:]) +
                         similarity[:3, 3:]], axis=-1)
