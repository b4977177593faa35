"""Load a split of the configured scene."""
import numpy as np

from jaxnerf.data import blender
from jaxnerf.data import llff
from jaxnerf.data import transforms
from jaxnerf.errors import ConfigError


def background_of(data_config):
  return (1.0, 1.0, 1.0) if data_config.white_background else (0.0, 0.0, 0.0)


def _blender(d, split, stride):
  return blender.load_split(d.data_dir, split, factor=d.factor, background=background_of(d), near=d.near, far=d.far,
                            stride=stride, pixel_center=d.pixel_center)


def _llff(d, split, stride):
  return llff.load_split(d.data_dir, split, factor=d.factor, hold=d.llff_hold, spherify=d.spherify, ndc=d.ndc,
                         stride=stride, pixel_center=d.pixel_center)


def _transforms(d, split, stride):
  t = d.transforms
  if d.ndc:
    raise ConfigError("config.data.ndc: expected False for data.dataset 'transforms' (normalised device coordinates "
                      "are for LLFF scenes; use model.contraction for unbounded captures)")
  return transforms.load_split(d.data_dir, split, factor=d.factor, background=background_of(d), hold=t.hold,
                               normalize=t.normalize, centre=t.centre, near=t.near, far=t.far, stride=stride,
                               pixel_center=d.pixel_center, long_side=t.long_side)


# data.dataset -> loader(config.data, split, stride) returning Views; format-specific options live in their own
# subgroup of config.data.
LOADERS = {"blender": _blender, "llff": _llff, "transforms": _transforms}
DATASETS = tuple(LOADERS)


def load_views(config, split, stride=1):
  """Views of `split` for config.data; `stride` keeps every stride-th view (at least the first)."""
  d = config.data
  if d.dataset not in LOADERS:
    raise ConfigError(f"config.data.dataset: expected one of {DATASETS}, got {d.dataset!r}")
  if not d.data_dir:
    raise ConfigError(f"config.data.data_dir: expected the {d.dataset} scene's folder "
                      "(--config.data.data_dir=PATH), got none")
  return LOADERS[d.dataset](d, split, stride)


# Points inside the camera frustum between the near plane and infinity have NDC coordinates in [-1, 1].
NDC_SCENE_BOX = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


def with_scene_bounds(config, views):
  """A copy of config whose data.near and data.far are the ray bounds of `views`: the loader of an LLFF scene
  sets them (0 and 1 in NDC, else from the scene's depth bounds), so that training, evaluation and the saved
  config all use the same ones. Rays in NDC also fix the scene box (data.scene_box) of hash-grid fields. For
  transforms.json captures it records the scene normalisation and the held-out frames."""
  config = config.copy_and_resolve_references()
  config.data.near, config.data.far = float(views.near), float(views.far)
  if config.data.dataset == "transforms":  # recorded in the run's config.json, so outputs map back
    config.data.transforms.scene_from_world = tuple(float(v) for v in np.ravel(views.scene_from_world))
    config.data.transforms.test_frames = tuple(views.split_names["test"])
  if views.ndc:
    config.data.scene_box = NDC_SCENE_BOX
  return config
