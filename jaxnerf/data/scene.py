"""The scene description: what the loader found out about a scene, as opposed to what the user asked for.

One object owns these facts: the rays' bounds, the box where bounded fields and the occupancy grid live, the
similarity that took the input's cameras into the scene's frame, whether rays are in normalised device coordinates,
the background colour, and which frames were held out. Training saves it as `scene.json` beside `config.json`
(which keeps only the user's settings); evaluation, videos and export use the same facts.
"""
import dataclasses
import json
import math
from typing import Optional, Tuple

import numpy as np

from jaxnerf import storage
from jaxnerf.errors import DataError

FILE_NAME = "scene.json"
# Points inside the camera frustum between the near plane and infinity have NDC coordinates in [-1, 1].
NDC_SCENE_BOX = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Scene:
  """Attributes:
    near, far: distance bounds along the rays.
    scene_box: (min x, y, z, max x, y, z): where bounded fields (hash grids) and the occupancy grid live.
    scene_from_world: 16 floats, the row-major [4, 4] similarity from the input's frame into the scene's.
    ndc: rays are in normalised device coordinates (forward-facing LLFF scenes).
    background: RGB that transparent pixels were composited onto and renders show where rays are not absorbed.
    test_frames: the held-out frames, where the loader chose the split (transforms.json captures), else None.
    train_frames: the training frames in the order of the run's views (their learned corrections), where known.
  """
  near: float
  far: float
  scene_box: Tuple[float, ...]
  scene_from_world: Tuple[float, ...] = tuple(np.eye(4).ravel())
  ndc: bool = False
  background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
  test_frames: Optional[Tuple[str, ...]] = None
  train_frames: Optional[Tuple[str, ...]] = None

  @property
  def scene_from_world_matrix(self):
    """[4, 4] float64."""
    return np.asarray(self.scene_from_world, np.float64).reshape(4, 4)

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text, where):
    """A Scene from the text of a scene.json; DataError naming `where` when it is not one."""
    try:
      fields = json.loads(text)
      scene = cls(near=float(fields["near"]), far=float(fields["far"]),
                  scene_box=tuple(float(v) for v in fields["scene_box"]),
                  scene_from_world=tuple(float(v) for v in fields["scene_from_world"]), ndc=bool(fields["ndc"]),
                  background=tuple(float(v) for v in fields["background"]),
                  test_frames=None if fields.get("test_frames") is None else tuple(map(str, fields["test_frames"])),
                  train_frames=None if fields.get("train_frames") is None else tuple(map(str, fields["train_frames"])))
    except (ValueError, KeyError, TypeError) as e:
      raise DataError(f"{where}: not a jaxnerf scene description ({type(e).__name__}: {e})") from None
    numbers = (scene.near, scene.far, *scene.scene_box, *scene.scene_from_world)
    if len(scene.scene_box) != 6 or len(scene.scene_from_world) != 16 or not all(map(math.isfinite, numbers)):
      raise DataError(f"{where}: scene_box must be 6 and scene_from_world 16 finite numbers")
    return scene

  def differences(self, other, tolerance=1e-5):
    """Names of the facts in which `other` differs from this scene (numbers to within `tolerance`; the training
    frames only where both know them)."""
    names = []
    for field in dataclasses.fields(self):
      a, b = getattr(self, field.name), getattr(other, field.name)
      if field.name == "train_frames" and (a is None or b is None):  # known only to scenes of training views
        continue
      if isinstance(a, float) or (isinstance(a, tuple) and a and isinstance(a[0], float)):
        same = np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=tolerance, atol=tolerance)
      else:
        same = a == b
      if not same:
        names.append(field.name)
    return names


def of_views(views, scene_box, background):
  """The Scene of views from a loader; `scene_box` is the user's box (config.data.scene_box), which rays in NDC
  replace with the NDC cube; `background` the RGB renders show where rays are not absorbed."""
  split_names = views.split_names or {}
  test_frames = split_names.get("test")
  return Scene(near=float(views.near), far=float(views.far),
               scene_box=NDC_SCENE_BOX if views.ndc else tuple(float(v) for v in scene_box),
               scene_from_world=tuple(float(v) for v in np.ravel(views.scene_from_world)), ndc=bool(views.ndc),
               background=tuple(float(c) for c in background),
               test_frames=None if test_frames is None else tuple(test_frames))


def path_in(workdir):
  return storage.join(workdir, FILE_NAME)


def load(workdir):
  """The Scene saved in workdir/scene.json, or None for a run written before scene descriptions existed."""
  path = path_in(workdir)
  if not storage.exists(path):
    return None
  try:
    with storage.open_file(path, "rb") as f:
      text = f.read().decode("utf-8")
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: cannot be read ({e})") from None
  return Scene.from_json(text, path)


def background_of(data_config):
  """The background colour config.data.white_background asks for: white, else black."""
  return (1.0, 1.0, 1.0) if data_config.white_background else (0.0, 0.0, 0.0)


def of_settings(data_config):
  """The Scene that config.data's own bounds, box and background describe, for rays made without a loader (tests
  and benchmarks of synthetic rays)."""
  return Scene(near=float(data_config.near), far=float(data_config.far),
               scene_box=tuple(float(v) for v in data_config.scene_box), background=background_of(data_config))
