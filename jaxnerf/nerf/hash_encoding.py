"""Multiresolution hash encoding (Mueller et al. 2022, Instant-NGP) in plain JAX.

Each of L levels is a grid of resolution N_l (vertices at i / N_l, i = 0 .. N_l, over the unit cube), the N_l
geometric from `min_resolution` to `max_resolution`. A vertex owns a row of F learned features in its level's
table of T rows: levels whose (N_l + 1)^3 vertices fit in T rows index them densely, the others through a spatial
hash. A point's features are the trilinear interpolation of its cell's 8 corners, level by level, concatenated.
Forward is a gather; autodiff makes the backward pass a scatter-add.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# The spatial hash of Teschner et al. (2003) as Instant-NGP uses it: coordinate-wise products with large primes,
# XOR-ed, modulo the table size. The first "prime" is 1 for cache coherence along x.
HASH_PRIMES = (1, 2654435761, 805459861)
# The 8 corner offsets of a cell, [8, 3], x fastest.
CORNERS = np.array([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], np.uint32)


def level_resolutions(num_levels, min_resolution, max_resolution):
  """Grid resolutions N_l = floor(N_min * b^l) with b chosen so that the last level has N_max: [num_levels]."""
  if num_levels == 1:
    return np.array([min_resolution], np.int64)
  growth = np.exp((np.log(max_resolution) - np.log(min_resolution)) / (num_levels - 1))
  return np.floor(min_resolution * growth ** np.arange(num_levels) + 1e-6).astype(np.int64)


def cell_rows(cells, resolutions, table_size):
  """Table rows of the 8 corners of grid cells.

  Args:
    cells: [..., L, 3] uint32 lower corners, each coordinate in 0 .. N_l - 1.
    resolutions: [L] numpy grid resolutions (static).
    table_size: rows per level, a power of two.

  Returns:
    [..., L, 8] int32 rows in 0 .. table_size - 1, corners in CORNERS order: dense (x + y (N+1) + z (N+1)^2)
    where the level's vertices fit, else hashed.
  """
  side = (resolutions + 1).astype(np.uint64)
  dense_level = side ** 3 <= table_size
  # Per level and axis, what a coordinate is multiplied by: the dense strides or the hash primes. uint32
  # arithmetic wraps modulo 2^32, as the hash wants; dense rows stay below table_size where they are used.
  multipliers = np.where(dense_level[:, None], np.stack([np.ones_like(side), side, side * side], axis=-1),
                         np.array(HASH_PRIMES, np.uint64)) % (1 << 32)
  multipliers = jnp.asarray(multipliers.astype(np.uint32))  # [L, 3]
  # Each corner's row combines one term per axis (the lower or upper coordinate's): build the 2 x 2 x 2 combinations
  # from the 2 x 3 terms instead of 8 x 3 corner coordinates.
  terms = jnp.stack([cells * multipliers, (cells + 1) * multipliers], axis=-2)  # [..., L, 2, 3]
  x, y, z = terms[..., None, None, :, 0], terms[..., None, :, None, 1], terms[..., :, None, None, 2]
  dense = z + y + x  # [..., L, 2 (z), 2 (y), 2 (x)]
  hashed = (z ^ y ^ x) & jnp.uint32(table_size - 1)
  rows = jnp.where(jnp.asarray(dense_level)[:, None, None, None], dense, hashed).astype(jnp.int32)
  return rows.reshape(*rows.shape[:-3], 8)


def grid_cells(x, resolutions):
  """The cell of each level that holds each point, and the point's position inside it.

  Args:
    x: [..., 3] points; coordinates are clamped to [0, 1] (the box's faces).
    resolutions: [L] numpy grid resolutions.

  Returns:
    [..., L, 3] uint32 lower corners in 0 .. N_l - 1, and [..., L, 3] fractions in [0, 1].
  """
  res = jnp.asarray(resolutions, x.dtype)
  position = jnp.clip(x, 0.0, 1.0)[..., None, :] * res[:, None]
  # At x = 1 the point sits on the upper face of the last cell, not in a cell beyond the grid.
  cell = jnp.minimum(jnp.floor(position), res[:, None] - 1)
  return cell.astype(jnp.uint32), position - cell


def hash_grid_features(tables, x, resolutions):
  """Interpolated features of points in the unit cube.

  Args:
    tables: [L, T, F] feature tables, T a power of two.
    x: [..., 3] points; coordinates are clamped to [0, 1] (the box's faces), so no index leaves its table.
    resolutions: [L] numpy grid resolutions (static).

  Returns:
    [..., L * F] features, level by level.
  """
  num_levels, table_size, num_features = tables.shape
  cell, frac = grid_cells(x, resolutions)
  rows = cell_rows(cell, resolutions, table_size)  # [..., L, 8]
  rows = rows + (jnp.arange(num_levels, dtype=jnp.int32) * table_size)[:, None]
  values = tables.reshape(num_levels * table_size, num_features)[rows]  # [..., L, 8, F]
  per_axis = jnp.stack([1.0 - frac, frac], axis=-2)  # [..., L, 2, 3]
  weights = (per_axis[..., :, None, None, 2] * per_axis[..., None, :, None, 1] * per_axis[..., None, None, :, 0])
  features = jnp.einsum("...c,...cf->...f", weights.reshape(*frac.shape[:-1], 8), values)  # [..., L, F]
  return features.reshape(*x.shape[:-1], num_levels * num_features)


class HashEncoding(nn.Module):
  """Multiresolution hash encoding of points in the unit cube: [..., 3] -> [..., num_levels * features_per_level].

  The tables start uniform in +-1e-4, as in Instant-NGP.
  """
  num_levels: int = 16
  features_per_level: int = 2
  log2_table_size: int = 19
  min_resolution: int = 16
  max_resolution: int = 2048

  @property
  def resolutions(self):
    return level_resolutions(self.num_levels, self.min_resolution, self.max_resolution)

  @nn.compact
  def __call__(self, x):
    init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -1e-4, 1e-4)
    tables = self.param("tables", init, (self.num_levels, 2 ** self.log2_table_size, self.features_per_level))
    return hash_grid_features(tables, x, self.resolutions)
