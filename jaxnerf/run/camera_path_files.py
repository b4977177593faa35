"""Camera path files: keyframes placed in the viewer, rendered by `render.py --path=FILE.json`.

The format (docs/viewer.md), JSON:

  {"format": "jaxnerf camera path", "version": 1, "fps": 30,
   "keyframes": [{"time": 0.0, "camera_to_world": [[...4 numbers], [...], [...]], "fov_y_degrees": 50.0}, ...]}

camera_to_world is the 3x4 (or 4x4, last row 0 0 0 1) camera-to-world matrix in the run's scene frame (that of
its training poses) and OpenGL's convention (the camera looks down its -z axis, y up); time is in seconds,
strictly increasing; fov_y_degrees is the vertical field of view. Frames are sampled at fps from the first
keyframe's time to the last's (core/camera_paths.interpolate_keyframes).
"""
import json

import numpy as np

from jaxnerf import storage
from jaxnerf.errors import ConfigError

FORMAT = "jaxnerf camera path"
VERSION = 1


def to_json(poses, fov_y_degrees, times, fps):
  """The file's text for [K, 3, 4] poses, [K] fields of view and [K] times."""
  keyframes = [{"time": float(t), "camera_to_world": np.asarray(p, np.float64)[:3].round(6).tolist(),
                "fov_y_degrees": float(f)} for p, f, t in zip(poses, fov_y_degrees, times)]
  return json.dumps({"format": FORMAT, "version": VERSION, "fps": fps, "keyframes": keyframes}, indent=1)


def load(path):
  """The keyframes of a camera path file: ([K, 3, 4] poses, [K] fov_y in degrees, [K] times, fps).

  Raises ConfigError naming the file and what is wrong with it."""
  where = f"--path={path}"
  try:
    with storage.open_file(path, "r") as f:
      data = json.load(f)
  except OSError as e:
    raise ConfigError(f"{where}: cannot read it ({e.strerror})") from None
  except json.JSONDecodeError as e:
    raise ConfigError(f"{where}: not JSON ({e.msg} at line {e.lineno})") from None
  if not isinstance(data, dict) or data.get("format") != FORMAT:
    raise ConfigError(f"{where}: not a camera path (expected \"format\": \"{FORMAT}\"; see docs/viewer.md)")
  keyframes, fps = data.get("keyframes"), data.get("fps")
  if not isinstance(fps, (int, float)) or fps <= 0:
    raise ConfigError(f"{where}: \"fps\" must be a positive number, got {fps!r}")
  if not isinstance(keyframes, list) or not keyframes:
    raise ConfigError(f"{where}: \"keyframes\" must be a non-empty list")
  try:
    poses = np.array([np.asarray(k["camera_to_world"], np.float64)[:3] for k in keyframes])
    fov = np.array([float(k["fov_y_degrees"]) for k in keyframes])
    times = np.array([float(k["time"]) for k in keyframes])
  except (KeyError, TypeError, ValueError, IndexError) as e:
    raise ConfigError(f"{where}: each keyframe needs time, camera_to_world (3x4) and fov_y_degrees ({e!r})") from None
  if poses.shape[1:] != (3, 4) or not np.isfinite(poses).all():
    raise ConfigError(f"{where}: camera_to_world must be finite 3x4 or 4x4 matrices")
  if not ((fov > 0) & (fov < 180)).all():
    raise ConfigError(f"{where}: fov_y_degrees must lie between 0 and 180")
  if (np.diff(times) <= 0).any():
    raise ConfigError(f"{where}: keyframe times must increase strictly")
  return poses, fov, times, float(fps)
