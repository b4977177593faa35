"""The dataset registry: load a split of the configured scene, and describe the scene."""
import dataclasses

from jaxnerf.data import blender
from jaxnerf.data import llff
from jaxnerf.data import scene as scene_lib
from jaxnerf.data import transforms
from jaxnerf.errors import ConfigError


def _blender(d, split, stride, check_only, share=None):
  return blender.load_split(d.data_dir, split, factor=d.factor, background=scene_lib.background_of(d), near=d.near,
                            far=d.far, stride=stride, pixel_center=d.pixel_center, check_only=check_only, share=share)


def _llff(d, split, stride, check_only, share=None):
  if check_only:  # loading any split reads every photo of the scene
    return None
  return llff.load_split(d.data_dir, split, factor=d.factor, hold=d.llff_hold, spherify=d.spherify, ndc=d.ndc,
                         stride=stride, pixel_center=d.pixel_center, share=share)


def _transforms(d, split, stride, check_only, share=None):
  t = d.transforms
  if d.ndc:
    raise ConfigError("config.data.ndc: expected False for data.dataset 'transforms' (normalised device coordinates "
                      "are for LLFF scenes; use model.contraction for unbounded captures)")
  return transforms.load_split(d.data_dir, split, factor=d.factor, background=scene_lib.background_of(d), hold=t.hold,
                               normalize=t.normalize, centre=t.centre, near=t.near, far=t.far, stride=stride,
                               pixel_center=d.pixel_center, long_side=t.long_side, check_only=check_only,
                               share=share)


# data.dataset -> loader(config.data, split, stride, check_only, share) returning Views (None when check_only: every
# frame of the split checked, photos not decoded; with share, the photos of one process's share, see
# views.share_of); format-specific options live in their own subgroup of config.data.
LOADERS = {"blender": _blender, "llff": _llff, "transforms": _transforms}
DATASETS = tuple(LOADERS)


def load_views(config, split, stride=1, share=None):
  """Views of `split` for config.data; `stride` keeps every stride-th view (at least the first); `share`
  (process index, process count) holds only that process's share of the photos (views.share_of)."""
  d = config.data
  if d.dataset not in LOADERS:
    raise ConfigError(f"config.data.dataset: expected one of {DATASETS}, got {d.dataset!r}")
  if not d.data_dir:
    raise ConfigError(f"config.data.data_dir: expected the {d.dataset} scene's folder "
                      "(--config.data.data_dir=PATH), got none")
  return LOADERS[d.dataset](d, split, stride, False, share)


def check_held_out(config):
  """Check every frame of the splits a run will render besides "train" (config.eval.split, and "val" when
  training validates) without decoding their photos: files readable, sizes matching their intrinsics; so that a
  bad one is reported before training rather than by eval.py after it."""
  splits = {config.eval.split} | ({"val"} if config.train.val_every else set())
  for split in sorted(splits - {"train"}):
    LOADERS[config.data.dataset](config.data, split, 1, True)


def scene_of(config, views, training=False):
  """The data.scene.Scene of views from this config's loader: their ray bounds, normalisation and held-out frames,
  the box of config.data.scene_box (the NDC cube for rays in NDC) and the background colour; with `training`
  (views of the train split), the names of the training frames too."""
  scene = scene_lib.of_views(views, config.data.scene_box, scene_lib.background_of(config.data))
  return dataclasses.replace(scene, train_frames=tuple(views.names)) if training else scene
