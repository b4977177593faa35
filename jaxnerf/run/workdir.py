"""The run directory: checking that it can hold a run, the resolved config and the scene description written in
it, and files written so that a reader never takes a partial one for a complete one."""
import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile

import flax
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from tensorboardX import SummaryWriter

from jaxnerf import config as config_lib
from jaxnerf import storage
from jaxnerf.data import scene as scene_lib
from jaxnerf.errors import WorkdirError
from jaxnerf.nerf import view_corrections
from jaxnerf.runtime import interrupts


VIEWS_FILE = "views.json"


def is_lead_process():
  """Whether this process writes files and progress that all processes would otherwise write alike."""
  return jax.process_index() == 0


# Settings once in the schema, removed since (none changed what a checkpoint holds): runs that have them open.
REMOVED_FIELDS = ("model.hash.gradient_smoothing",)


def prepare_workdir(config, workdir):
  """Create the workdir and check that it can hold this run, before anything in it is written.

  Raises WorkdirError if it cannot be created or written, or if it holds a run whose model differs from
  config.model (its checkpoints would not fit).
  """
  try:
    storage.check_writable(workdir)
  except OSError as e:
    reason = "no such bucket or folder" if storage.is_url(workdir) and isinstance(e, FileNotFoundError) else \
        e.strerror or e
    raise WorkdirError(f"{workdir}: cannot write to the workdir ({reason})") from None
  saved_path = storage.join(workdir, "config.json")
  if storage.exists(saved_path):
    try:
      saved = _read_json(saved_path)
      saved = {"model": saved["model"], "occupancy": saved.get("occupancy", {})}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
      raise WorkdirError(f"{saved_path}: not a jaxnerf run config; use another --workdir") from None
    # Fields added to the schema after the run was made count at their defaults, which is how the run behaved;
    # fields since removed from it never shaped a checkpoint.
    saved = {**_checkpoint_shaping(config_lib.base_config()), **_checkpoint_shaping(saved)}
    saved = {k: v for k, v in saved.items() if k not in REMOVED_FIELDS}
    current = _checkpoint_shaping(config)
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
      diffs = ", ".join(f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in changed)
      raise WorkdirError(f"{saved_path}: the run in this workdir has another model ({diffs}); "
                         "use another --workdir or the same model settings")


def _read_json(path):
  with storage.open_file(path, "rb") as f:
    return json.loads(f.read().decode("utf-8"))


def _checkpoint_shaping(config):
  """The settings that fix the shapes of a run's checkpoints, flat ("model.mlp.width": 128), from a config or
  the dict of a saved config.json: all of `model` and the occupancy grid's resolution."""
  if not isinstance(config, dict):
    config = json.loads(config.to_json_best_effort())
  model = config.get("model")
  flat = flax.traverse_util.flatten_dict(model, sep=".") if isinstance(model, dict) else {}
  flat = {f"model.{k}": v for k, v in flat.items()}
  occupancy = config.get("occupancy")
  if isinstance(occupancy, dict) and "resolution" in occupancy:
    flat["occupancy.resolution"] = occupancy["resolution"]
  return flat


def write_config(config, workdir, name="config.json"):
  """Save the resolved config (what the user set, with the defaults) as workdir/<name>."""
  with written_in_place(storage.join(workdir, name)) as partial:
    with open(partial, "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def write_scene(scene, workdir, name=scene_lib.FILE_NAME):
  """Save the scene description (data.scene.Scene) as workdir/<name>."""
  with written_in_place(storage.join(workdir, name)) as partial:
    with open(partial, "w") as f:
      f.write(scene.to_json())


def write_view_corrections(workdir, scene, cam_to_world, corrections):
  """Save the learned corrections of the training views as workdir/views.json: for each frame its refined
  camera-to-world matrix (row-major 3x4, in the scene's frame and in the input's), its pose correction and its
  colour map."""
  refined = np.asarray(view_corrections.corrected_poses(jnp.asarray(cam_to_world), corrections), np.float64)
  world_from_scene = np.linalg.inv(scene.scene_from_world_matrix)
  to_list = lambda a: np.asarray(a, np.float64).tolist()
  frames = []
  for i, name in enumerate(scene.train_frames):
    pose = np.concatenate([refined[i], [[0.0, 0.0, 0.0, 1.0]]])
    in_input = world_from_scene @ pose
    in_input[:3, :3] /= np.cbrt(np.linalg.det(in_input[:3, :3]))  # a rotation again, without the scene's scale
    frames.append({"name": name, "cam_to_world": to_list(refined[i]), "cam_to_world_input": to_list(in_input[:3]),
                   "rotation": to_list(corrections.rotation[i]), "translation": to_list(corrections.translation[i]),
                   "color_matrix": to_list(np.eye(3) + np.asarray(corrections.color_matrix[i])),
                   "color_offset": to_list(corrections.color_offset[i])})
  with written_in_place(storage.join(workdir, VIEWS_FILE)) as partial:
    with open(partial, "w") as f:
      json.dump({"frames": frames}, f, indent=1)


def run_scene(workdir, loaded):
  """The scene a trained run lives in: the one it saved in scene.json, or for a run written before scene.json
  existed, `loaded` (the loader's now) with the normalisation its config.json recorded. Where the loader now finds
  other facts (the scene's files changed), a note names them and the run's are used.
  """
  saved = scene_lib.load(workdir)
  if saved is None:
    recorded = _recorded_normalisation(workdir)
    return loaded if recorded is None else dataclasses.replace(loaded, scene_from_world=recorded)
  changed = saved.differences(loaded)
  if changed and is_lead_process():
    print(f"note: the scene's {', '.join(changed)} differ from the run's {scene_lib.FILE_NAME}; using the run's",
          flush=True)
  return saved


def _recorded_normalisation(workdir):
  """data.transforms.scene_from_world of a config.json written before scene.json existed (16 floats), or None."""
  path = storage.join(workdir, "config.json")
  try:
    recorded = _read_json(path)["data"]["transforms"]["scene_from_world"]
  except (OSError, ValueError, KeyError, TypeError):
    return None
  if not recorded:
    return None
  matrix = tuple(float(v) for v in recorded) if isinstance(recorded, list) else ()
  if len(matrix) != 16 or not all(map(math.isfinite, matrix)):
    raise WorkdirError(f"{path}: data.transforms.scene_from_world must be 16 finite numbers (a row-major 4x4)")
  return matrix


def data_differences(config, workdir):
  """(field, value here, value in workdir/config.json) for each data setting of `config` that differs from the one
  the run in workdir trained with (not data.data_dir: a scene may move; nor, for runs written before scene.json,
  the bounds and box that their loader wrote into config.json); [] without a config.json."""
  try:
    there = flax.traverse_util.flatten_dict(_read_json(storage.join(workdir, "config.json"))["data"], sep=".")
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return []
  here = flax.traverse_util.flatten_dict(json.loads(config.data.to_json_best_effort()), sep=".")
  ignored = {"data_dir"} | (set() if scene_lib.load(workdir) else {"near", "far", "scene_box"})
  return [(f"data.{k}", here[k], there[k]) for k in sorted(here)
          if k not in ignored and k in there and here[k] != there[k]]


@contextlib.contextmanager
def written_in_place(path):
  """Yield a local temporary file name (same extension) to write the file under; when the block ends without an
  error it becomes `path` (storage.publish: a rename on local disk, one upload to a URL), and it is removed
  otherwise or on Ctrl-C: `path` is complete or untouched."""
  partial = storage.partial_name(path)
  with interrupts.partial_file(partial):
    try:
      yield partial
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(partial)
      raise
    storage.publish(partial, path)


def save_npy(array, path):
  """Write an array as a .npy file; the file is complete or absent (see written_in_place)."""
  with written_in_place(path) as partial:
    np.save(partial, array)


def save_png(image, path):
  """Write a uint8 image array as a PNG; the file is complete or absent (see written_in_place)."""
  with written_in_place(path) as partial:
    Image.fromarray(image).save(partial, format="PNG")


class EventWriter(SummaryWriter):
  """TensorBoard's event files in workdir/tensorboard. For a workdir URL they are written into a local folder and
  uploaded whole at every `flush` and at `close`: tensorboardX's own gs:// writer uploads once more whenever it is
  garbage collected, as late as the interpreter's exit."""

  def __init__(self, workdir):
    self.target = storage.join(workdir, "tensorboard")
    self.staging = tempfile.mkdtemp(prefix="jaxnerf_tensorboard_") if storage.is_url(workdir) else None
    super().__init__(self.staging or self.target)

  def flush(self):
    super().flush()
    if self.staging:
      for name in os.listdir(self.staging):
        storage.upload(os.path.join(self.staging, name), storage.join(self.target, name))

  def close(self):
    super().close()
    if self.staging:
      self.flush()
      shutil.rmtree(self.staging)
