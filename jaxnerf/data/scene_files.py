"""Reading a scene's description files, for every format: JSON, numbers and paths in them, and camera poses, each
checked with an error that names the file and the field."""
import json
import math
import os

import numpy as np

from jaxnerf import storage
from jaxnerf.errors import DataError


def read_json(path, what):
  """The parsed JSON file at `path` (`what` it should be, for the messages); DataError if it cannot be read."""
  try:
    with storage.open_file(path, "rb") as f:
      return json.loads(f.read().decode("utf-8"))
  except FileNotFoundError:
    raise DataError(f"{path}: file not found (expected {what})") from None
  except json.JSONDecodeError as e:
    raise DataError(f"{path}: malformed JSON ({e})") from None
  except UnicodeDecodeError:
    raise DataError(f"{path}: not UTF-8 text (expected {what})") from None
  except RecursionError:
    raise DataError(f"{path}: JSON nested too deeply (expected {what})") from None
  except OSError as e:
    raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def is_number(value):
  """A finite JSON number (bools, which Python counts as ints, are not)."""
  if isinstance(value, bool):
    return False
  return isinstance(value, int) or isinstance(value, float) and math.isfinite(value)


def short_repr(value, limit=60):
  """repr(value) on one line, cut to `limit` characters, for error messages about a scene file's content."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def scene_relative_path(file_path, where):
  """The normalised `file_path` of a scene file, checked to be a relative path inside the scene folder.

  It names the view's outputs too (eval/<name>.png), so an absolute path or one leaving the folder (`..`) could
  make evaluation write outside the workdir; DataError for those, non-strings, empty strings and control
  characters.
  """
  if not isinstance(file_path, str) or not file_path.strip():
    raise DataError(f"{where} must be a non-empty string, got {short_repr(file_path)}")
  if any(ord(c) < 32 or ord(c) == 127 for c in file_path):
    raise DataError(f"{where} must not contain control characters, got {short_repr(file_path)}")
  normalised = os.path.normpath(file_path)
  if os.path.isabs(normalised) or normalised == ".." or normalised.startswith(".." + os.sep) or normalised == ".":
    raise DataError(f"{where} must be a path inside the scene folder, relative to it, got {short_repr(file_path)}")
  return normalised


def check_pose(pose, where, field="camera pose", shapes=((3, 4), (4, 4))):
  """Raise DataError unless `pose` has one of `shapes` and is finite with a rotation as its 3x3 block."""
  if pose.shape not in shapes:
    raise DataError(f"{where}: {field} must be {' or '.join('x'.join(map(str, s)) for s in shapes)}, "
                    f"got shape {pose.shape}")
  if not np.all(np.isfinite(pose)):
    raise DataError(f"{where}: {field} has non-finite entries")
  rotation = pose[:3, :3]
  if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or abs(np.linalg.det(rotation) - 1) > 1e-3:
    raise DataError(f"{where}: {field} is not a rigid transform (its 3x3 block is not a rotation)")


def frame_pose(frame, where, shapes=((4, 4), (3, 4))):
  """The [3, 4] float64 camera-to-world matrix of a frame's 'transform_matrix' (one of `shapes`, finite, within
  float32's range, with a rotation as its 3x3 block); DataError naming `where` otherwise."""
  try:
    pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
  except (TypeError, ValueError, OverflowError):
    raise DataError(f"{where}: 'transform_matrix' must be a {' or '.join('x'.join(map(str, s)) for s in shapes)} "
                    "array of numbers") from None
  if np.any(np.abs(pose[np.isfinite(pose)]) > np.finfo(np.float32).max):
    raise DataError(f"{where}: 'transform_matrix' has entries too large for float32")
  check_pose(pose, where, field="transform_matrix", shapes=shapes)
  return pose[:3, :4]
