"""Load a split of the configured scene."""
from jaxnerf.data import blender
from jaxnerf.data import llff
from jaxnerf.errors import ConfigError

DATASETS = ("blender", "llff")


def load_views(config, split, stride=1):
  """Views of `split` for config.data; `stride` keeps every stride-th view (at least the first)."""
  d = config.data
  if d.dataset == "blender":
    background = (1.0, 1.0, 1.0) if d.white_background else (0.0, 0.0, 0.0)
    return blender.load_split(d.data_dir, split, factor=d.factor, background=background, near=d.near, far=d.far,
                              stride=stride, pixel_center=d.pixel_center)
  if d.dataset == "llff":
    return llff.load_split(d.data_dir, split, factor=d.factor, hold=d.llff_hold, spherify=d.spherify, ndc=d.ndc,
                           stride=stride, pixel_center=d.pixel_center)
  raise ConfigError(f"config.data.dataset: expected one of {DATASETS}, got {d.dataset!r}")


# Points inside the camera frustum between the near plane and infinity have NDC coordinates in [-1, 1].
NDC_SCENE_BOX = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


def with_scene_bounds(config, views):
  """A copy of config whose data.near and data.far are the ray bounds of `views`: the loader of an LLFF scene
  sets them (0 and 1 in NDC, else from the scene's depth bounds), so that training, evaluation and the saved
  config all use the same ones. Rays in NDC also fix the scene box (data.scene_box) of hash-grid fields."""
  config = config.copy_and_resolve_references()
  config.data.near, config.data.far = float(views.near), float(views.far)
  if views.ndc:
    config.data.scene_box = NDC_SCENE_BOX
  return config
