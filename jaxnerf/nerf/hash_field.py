"""Hash-grid fields (Instant-NGP): a multiresolution hash encoding of the point in the scene box (or of all of
space, contracted) into small MLPs; the field with colour, and the density-only field of proposal levels.

Fields map `(points [..., num_samples, 3], viewdirs [..., 3])` to `(rgb [..., num_samples, 3] or None,
raw_density [..., num_samples])`; space outside the scene box is empty (raw density layers.EMPTY_RAW_DENSITY).
"""
from typing import Any, Callable, Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jaxnerf.core import contraction as contraction_lib
from jaxnerf.nerf import hash_encoding
from jaxnerf.nerf import layers


class HashField(nn.Module):
  """A hash-grid field (Instant-NGP): the encoding of the point in the scene box through one hidden layer gives the
  raw density and `geo_features` more values; those, with the view direction's spherical harmonics, go through
  `color_depth` hidden layers to the colour. Space outside the box is empty, unless `contraction` encodes all of
  space, contracted (unit_coordinates)."""
  encoding: hash_encoding.HashEncoding
  scene_box: Tuple[float, ...]
  contraction: bool = False
  density_width: int = 64
  geo_features: int = 15
  color_width: int = 64
  color_depth: int = 2
  sh_degree: int = 4
  activation: Callable = nn.relu
  kernel_init: layers.Initializer = nn.initializers.glorot_uniform()
  density_activation: Callable = layers.trunc_exp
  compute_dtype: Any = jnp.float32
  empty_outside_box = True  # without contraction (occupancy.py reads it)

  @nn.compact
  def __call__(self, points, viewdirs, appearance=None):
    """points: [..., num_samples, 3]; viewdirs: [..., 3] unit directions; appearance: None or [..., e] appearance
    codes. Returns rgb [..., num_samples, 3] in (0, 1) and raw density [..., num_samples]."""
    dense = layers.dense_maker(self.kernel_init, self.compute_dtype)
    batch_shape = points.shape[:-1]
    x, inside = contraction_lib.unit_coordinates(points, self.scene_box, self.contraction)
    rgb, raw_density = layers.density_and_color_heads(self, dense, self.encoding(layers.rows(x)), inside.reshape(-1),
                                                      viewdirs, appearance)
    return rgb.reshape(*batch_shape, 3), raw_density.reshape(batch_shape)


class HashDensityField(nn.Module):
  """A density-only hash-grid field (the proposal networks of mip-NeRF 360 / Zip-NeRF): encoding, one hidden
  layer, raw density. Returns (None, raw density [..., num_samples]) for points [..., num_samples, 3]. Points are
  mapped as in HashField."""
  encoding: hash_encoding.HashEncoding
  scene_box: Tuple[float, ...]
  contraction: bool = False
  width: int = 16
  activation: Callable = nn.relu
  kernel_init: layers.Initializer = nn.initializers.glorot_uniform()
  density_activation: Callable = layers.trunc_exp
  compute_dtype: Any = jnp.float32
  empty_outside_box = True  # without contraction (occupancy.py reads it)

  @nn.compact
  def __call__(self, points, viewdirs, appearance=None):
    del viewdirs, appearance
    dense = layers.dense_maker(self.kernel_init, self.compute_dtype)
    x, inside = contraction_lib.unit_coordinates(points, self.scene_box, self.contraction)
    h = self.activation(dense(self.width)(self.encoding(layers.rows(x))))
    raw_density = dense(1)(h)[:, 0]
    return None, jnp.where(inside.reshape(-1), raw_density, layers.EMPTY_RAW_DENSITY).reshape(points.shape[:-1])


def default_config():
  """config.model.hash: Instant-NGP's field."""
  c = ml_collections.ConfigDict()
  c.num_levels = 16
  c.features_per_level = 2
  c.log2_table_size = 19  # rows per level's table
  c.min_resolution = 16
  c.max_resolution = 2048
  c.density_width = 64
  c.geo_features = 15  # values besides the density passed from the density to the colour MLP
  c.color_width = 64
  c.color_depth = 2  # hidden layers of the colour MLP
  c.sh_degree = 4  # spherical-harmonics bands of the view direction
  c.density_activation = "trunc_exp"
  return c


def build(config, scene_box):
  """The HashField of config.model.hash over `scene_box`."""
  h = config.model.hash
  return HashField(
      encoding=hash_encoding.HashEncoding(h.num_levels, h.features_per_level, h.log2_table_size, h.min_resolution,
                                          h.max_resolution),
      scene_box=tuple(scene_box), density_width=h.density_width, geo_features=h.geo_features,
      color_width=h.color_width, color_depth=h.color_depth, sh_degree=h.sh_degree,
      density_activation=layers.density_activation(h.density_activation, "model.hash.density_activation"),
      compute_dtype=layers.compute_dtype(config), contraction=config.model.contraction)


def build_proposal(config, scene_box):
  """A density-only HashDensityField of config.model.proposal over `scene_box`."""
  p = config.model.proposal
  return HashDensityField(
      encoding=hash_encoding.HashEncoding(p.num_levels, p.features_per_level, p.log2_table_size, p.min_resolution,
                                          p.max_resolution),
      scene_box=tuple(scene_box), width=p.width, compute_dtype=layers.compute_dtype(config),
      contraction=config.model.contraction)
