"""A factorised feature field (Fridovich-Keil et al. 2023, K-Planes) for static scenes, in plain JAX.

Space (the unit cube of contraction.unit_coordinates) is factorised into three axis-aligned planes, xy, xz and yz,
each a grid of R x R learned F-vectors (vertex (i, j) at (i, j) / (R - 1)), at several resolutions R. A point's
features at one scale are the bilinear interpolations of its projections onto the three planes, multiplied
elementwise (the Hadamard product lets a feature be non-zero only where all three planes agree, which localises it
in 3-D); the scales' features are concatenated. Small MLPs turn them into density and colour, as in HashField.
Forward is a gather; autodiff makes the backward pass a scatter-add.
"""
from typing import Any, Callable, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxnerf.core import contraction as contraction_lib
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import layers

# The (first, second) axes that each plane spans, in the order of the planes' leading axis: xy, xz, yz.
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


def plane_cells(x, resolution):
  """The grid cell of a plane of R x R vertices that holds each point, and the point's position inside it.

  Args:
    x: [..., 2] plane coordinates; clamped to [0, 1] (the box's faces).
    resolution: R, vertices per side (at least 2).

  Returns:
    [..., 2] int32 lower vertices in 0 .. R - 2, and [..., 2] fractions in [0, 1].
  """
  position = jnp.clip(x, 0.0, 1.0) * (resolution - 1)
  # At x = 1 the point sits on the upper edge of the last cell, not in a cell beyond the grid.
  cell = jnp.minimum(jnp.floor(position), resolution - 2)
  return cell.astype(jnp.int32), position - cell


def interpolate_planes(planes, x):
  """Bilinear interpolation of the three planes at each point's projections onto them.

  Args:
    planes: [3, R, R, F]: planes[p, i, j] is plane p's vertex at (i, j) / (R - 1) along axes PLANE_AXES[p].
    x: [..., 3] points; coordinates are clamped to [0, 1], so no index leaves its plane.

  Returns:
    [..., 3, F] features, plane by plane.
  """
  num_planes, resolution, _, num_features = planes.shape
  cell, frac = plane_cells(x[..., jnp.asarray(PLANE_AXES)], resolution)  # [..., 3, 2] each
  flat = planes.reshape(-1, num_features)
  # Row of each cell's lower corner in the planes flattened to [3 R R, F].
  lower = (jnp.arange(num_planes, dtype=jnp.int32) * resolution + cell[..., 0]) * resolution + cell[..., 1]
  features = 0.0
  # Corner by corner: the [..., 3, F] values of one corner at a time, not all four at once, keep the memory of
  # large evaluations (occupancy refreshes of 2^18 points) down.
  for di in (0, 1):
    for dj in (0, 1):
      weight = (frac[..., 0] if di else 1.0 - frac[..., 0]) * (frac[..., 1] if dj else 1.0 - frac[..., 1])
      features = features + weight[..., None] * flat[lower + di * resolution + dj]
  return features


def multiscale_features(planes_per_scale, x):
  """K-Planes features of points in the unit cube.

  Args:
    planes_per_scale: a sequence of S [3, R_s, R_s, F] plane triples.
    x: [..., 3] points; coordinates are clamped to [0, 1].

  Returns:
    [..., S * F]: per scale, the elementwise product of the three planes' features; scales concatenated.
  """
  return jnp.concatenate([jnp.prod(interpolate_planes(planes, x), axis=-2) for planes in planes_per_scale], -1)


class PlaneEncoding(nn.Module):
  """Multiscale K-Planes encoding of points in the unit cube: [..., 3] -> [..., len(resolutions) * features].

  The planes start uniform in `init_range`, as in K-Planes: away from zero, so that the product of three planes
  neither vanishes nor gives vanishing gradients to the other two.
  """
  resolutions: Tuple[int, ...] = (64, 128, 256, 512)
  features: int = 32
  init_range: Tuple[float, float] = (0.1, 0.5)

  @nn.compact
  def __call__(self, x):
    init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, *self.init_range)
    planes = [self.param(f"planes_{s}", init, (len(PLANE_AXES), r, r, self.features))
              for s, r in enumerate(self.resolutions)]
    return multiscale_features(planes, x)


class PlanesField(nn.Module):
  """A K-Planes field with HashField's heads: the encoding of the point in the scene box through one hidden layer
  gives the raw density and `geo_features` more values; those, with the view direction's spherical harmonics, go
  through `color_depth` hidden layers to the colour. Space outside the box is empty, unless `contraction` encodes
  all of space, contracted (unit_coordinates)."""
  encoding: PlaneEncoding
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


def default_config():
  """config.model.planes: K-Planes' static-scene field (its multiscale planes, HashField's heads)."""
  c = ml_collections.ConfigDict()
  c.resolutions = (64, 128, 256, 512)  # vertices per side of each scale's planes
  c.features = 32  # per plane and scale
  c.init_low = 0.1  # planes start uniform in [init_low, init_high]
  c.init_high = 0.5
  c.density_width = 64
  c.geo_features = 15  # values besides the density passed from the density to the colour MLP
  c.color_width = 64
  c.color_depth = 2  # hidden layers of the colour MLP
  c.sh_degree = 4  # spherical-harmonics bands of the view direction
  c.density_activation = "trunc_exp"
  return c


def build(config, scene_box):
  """The PlanesField of config.model.planes over `scene_box`."""
  p = config.model.planes
  resolutions = tuple(int(r) for r in p.resolutions)
  if not resolutions or min(resolutions) < 2 or p.features < 1:
    raise ConfigError(f"config.model.planes.resolutions/features: expected resolutions of at least 2 and at least "
                      f"1 feature, got {p.resolutions} and {p.features}")
  if not p.init_low <= p.init_high:
    raise ConfigError(f"config.model.planes.init_low/init_high: expected low <= high, got {p.init_low} and "
                      f"{p.init_high}")
  return PlanesField(
      encoding=PlaneEncoding(resolutions, p.features, (p.init_low, p.init_high)),
      scene_box=tuple(scene_box), density_width=p.density_width, geo_features=p.geo_features,
      color_width=p.color_width, color_depth=p.color_depth, sh_degree=p.sh_degree,
      density_activation=layers.density_activation(p.density_activation, "model.planes.density_activation"),
      compute_dtype=layers.compute_dtype(config), contraction=config.model.contraction)
