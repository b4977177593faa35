"""Camera paths for videos: built from the training poses, a spiral for forward-facing (LLFF) scenes and an orbit
for inward-facing ones (Blender, spherified captures); or a smooth path through keyframes a user placed. Poses
are [..., 3, 4] camera-to-world matrices in the OpenGL convention of rays.py (the camera looks down its -z axis)."""
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


def rotation_to_quaternion(rotation):
  """[3, 3] rotation matrix -> [4] unit quaternion (w, x, y, z), w >= 0.

  From the largest of the four squared components (the division by it is then well conditioned)."""
  r = np.asarray(rotation, np.float64)
  squares = 0.25 * np.array([1 + r[0, 0] + r[1, 1] + r[2, 2], 1 + r[0, 0] - r[1, 1] - r[2, 2],
                             1 - r[0, 0] + r[1, 1] - r[2, 2], 1 - r[0, 0] - r[1, 1] + r[2, 2]])
  k = int(np.argmax(squares))
  big = np.sqrt(max(squares[k], 1e-30))
  # Off-diagonal sums and differences give the products of pairs of components, 4 q_i q_j.
  pairs = {(0, 1): r[2, 1] - r[1, 2], (0, 2): r[0, 2] - r[2, 0], (0, 3): r[1, 0] - r[0, 1],
           (1, 2): r[0, 1] + r[1, 0], (1, 3): r[0, 2] + r[2, 0], (2, 3): r[1, 2] + r[2, 1]}
  q = np.array([big if i == k else pairs[tuple(sorted((i, k)))] / (4.0 * big) for i in range(4)])
  return q * (1.0 if q[0] >= 0 else -1.0)


def quaternion_to_rotation(q):
  """[..., 4] quaternions (w, x, y, z), normalised here -> [..., 3, 3] rotation matrices."""
  q = np.asarray(q, np.float64)
  w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
  return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                   np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                   np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def hermite_spline(times, values, at):
  """A C1 cubic through keyframe values (cubic Hermite): tangents are numpy.gradient's slopes for uneven times
  (central between neighbours, one-sided at the ends), clamped to the keyframes outside their time span.

  Args:
    times: [K] strictly increasing keyframe times.
    values: [K, D] keyframe values.
    at: [F] times to evaluate at.

  Returns:
    [F, D] float64.
  """
  times, values, at = (np.asarray(a, np.float64) for a in (times, values, at))
  if len(times) == 1:
    return np.broadcast_to(values[0], (len(at), values.shape[1])).copy()
  slopes = np.gradient(values, times, axis=0, edge_order=1) if len(times) > 2 else \
      np.broadcast_to((values[1] - values[0]) / (times[1] - times[0]), values.shape)
  at = np.clip(at, times[0], times[-1])
  i = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
  span = times[i + 1] - times[i]
  u = ((at - times[i]) / span)[:, None]
  h00, h10, h01, h11 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2
  return h00 * values[i] + h10 * span[:, None] * slopes[i] + h01 * values[i + 1] + h11 * span[:, None] * slopes[i + 1]


def interpolate_keyframes(poses, fov_y, times, fps):
  """A smooth camera path through keyframes: positions, rotations (as quaternions on one hemisphere, splined and
  renormalised) and vertical fields of view each on a hermite_spline, sampled at `fps` from the first keyframe's
  time to the last's.

  Args:
    poses: [K, 3, 4] camera-to-world keyframes.
    fov_y: [K] vertical fields of view (any angle unit; returned in the same).
    times: [K] strictly increasing times in seconds.
    fps: frames per second.

  Returns:
    ([F, 3, 4] poses, [F] fields of view), F = round((last - first time) * fps) + 1.
  """
  poses, times = np.asarray(poses, np.float64), np.asarray(times, np.float64)
  quaternions = np.stack([rotation_to_quaternion(p[:, :3]) for p in poses])
  for k in range(1, len(quaternions)):  # q and -q are one rotation: take the one nearer the previous keyframe's
    if quaternions[k] @ quaternions[k - 1] < 0:
      quaternions[k] = -quaternions[k]
  num_frames = int(round((times[-1] - times[0]) * fps)) + 1
  at = times[0] + np.arange(num_frames) / fps
  rotations = quaternion_to_rotation(hermite_spline(times, quaternions, at))
  positions = hermite_spline(times, poses[:, :, 3], at)
  fov = hermite_spline(times, np.asarray(fov_y, np.float64)[:, None], at)[:, 0]
  return np.concatenate([rotations, positions[:, :, None]], axis=-1), fov
