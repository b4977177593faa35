"""Camera paths for videos, built from the training poses: a spiral for forward-facing (LLFF) scenes and an
orbit for inward-facing ones (Blender, spherified captures). Poses are [..., 3, 4] camera-to-world matrices in
the OpenGL convention of rays.py (the camera looks down its -z axis)."""
import numpy as np

from jaxnerf.core import poses as poses_lib


def spiral_path(poses, bounds, num_frames, num_rotations=2, z_rate=0.5, radius_percentile=90):
  """A spiral in front of the scene around the average camera, every frame looking at a focus point.

  The spiral's radii are a high percentile of the cameras' spread along each axis of the average camera (so the
  path stays among the captured views), and the focus depth is the harmonic mean of the nearest and farthest
  scene depths weighted towards the far end, as in the NeRF paper's LLFF videos.

  Args:
    poses: [N, 3, 4] training poses, recentred (poses_lib.recenter_poses), so the average camera is the identity.
    bounds: [N, 2] near and far scene depths of the views, in the poses' scale.
    num_frames: number of poses on the path.
    num_rotations: turns of the spiral.
    z_rate: turns of the in-and-out motion along the viewing axis per turn of the spiral.

  Returns:
    [num_frames, 3, 4] poses.
  """
  average = poses_lib.average_pose(poses)
  up = poses_lib.normalize(poses[:, :, 1].sum(0))
  near, far = 0.9 * bounds.min(), 5.0 * bounds.max()
  far_weight = 0.75
  focus_depth = 1.0 / ((1.0 - far_weight) / near + far_weight / far)
  offsets = poses[:, :, 3] - average[:, 3]
  radii = np.percentile(np.abs(offsets @ average[:, :3]), radius_percentile, axis=0)  # in the average's frame
  theta = np.linspace(0.0, 2.0 * np.pi * num_rotations, num_frames, endpoint=False)
  local = np.stack([np.cos(theta), -np.sin(theta), -np.sin(theta * z_rate)], axis=-1) * radii  # [F, 3]
  positions = average[:, 3] + local @ average[:, :3].T
  focus = average[:, 3] - focus_depth * average[:, 2]
  return np.stack([poses_lib.look_at_frame(p - focus, up, p) for p in positions])


def orbit_path(poses, num_frames):
  """A circle around the point the cameras look at, at the cameras' mean height and distance, looking at it.

  The circle's axis is the cameras' mean up vector (the world up of a capture taken around an object).

  Args:
    poses: [N, 3, 4] training poses of an inward-facing capture.
    num_frames: number of poses on the path (one full turn).

  Returns:
    [num_frames, 3, 4] poses.
  """
  centre = poses_lib.nearest_point_to_axes(poses)
  axis = poses_lib.normalize(poses[:, :, 1].sum(0))
  offsets = poses[:, :, 3] - centre
  height = np.mean(offsets @ axis)
  radius = np.mean(np.linalg.norm(offsets - np.outer(offsets @ axis, axis), axis=-1))
  # Two unit vectors spanning the circle's plane, starting from the first camera's side.
  start = offsets[0] - (offsets[0] @ axis) * axis
  u = poses_lib.normalize(start if np.linalg.norm(start) > 1e-6 else np.cross(axis, [0.1, 0.2, 0.3]))
  v = np.cross(axis, u)
  theta = np.linspace(0.0, 2.0 * np.pi, num_frames, endpoint=False)
  positions = centre + height * axis + radius * (np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v)
  return np.stack([poses_lib.look_at_frame(p - centre, axis, p) for p in positions])
