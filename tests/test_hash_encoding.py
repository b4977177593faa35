import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf.nerf import hash_encoding

PRIMES = (1, 2654435761, 805459861)


def reference_row(corner, resolution, table_size):
  """Table row of one grid vertex, with Python integers: dense when the level's vertices fit, else the hash."""
  side = resolution + 1
  if side ** 3 <= table_size:
    return corner[0] + corner[1] * side + corner[2] * side * side
  h = 0
  for c, p in zip(corner, PRIMES):
    h ^= (c * p) % 2 ** 32
  return h % table_size


def reference_features(tables, x, resolutions):
  """float64 trilinear interpolation, one point, level and corner at a time."""
  tables = np.asarray(tables, np.float64)
  out = []
  for point in np.asarray(x, np.float64):
    point = np.clip(point, 0.0, 1.0)
    features = []
    for level, n in enumerate(resolutions):
      position = point * n
      cell = np.minimum(np.floor(position), n - 1).astype(int)
      frac = position - cell
      value = np.zeros(tables.shape[-1])
      for dz in (0, 1):
        for dy in (0, 1):
          for dx in (0, 1):
            offset = np.array([dx, dy, dz])
            weight = np.prod(np.where(offset == 1, frac, 1 - frac))
            row = reference_row([int(c) for c in cell + offset], int(n), tables.shape[1])
            value += weight * tables[level, row]
      features.append(value)
    out.append(np.concatenate(features))
  return np.array(out)


# 2^10 rows: levels of resolution 4 and 8 are dense (125 and 729 vertices), 16 and 33 hashed.
RESOLUTIONS = hash_encoding.level_resolutions(4, 4, 33)
TABLE_SIZE = 2 ** 10


def random_tables(rng):
  return jnp.asarray(rng.normal(size=(4, TABLE_SIZE, 2)), jnp.float32)


def test_level_resolutions_are_geometric():
  np.testing.assert_array_equal(RESOLUTIONS, [4, 8, 16, 33])
  np.testing.assert_array_equal(hash_encoding.level_resolutions(16, 16, 2048)[[0, -1]], [16, 2048])
  sides = (RESOLUTIONS + 1) ** 3
  assert list(sides <= TABLE_SIZE) == [True, True, False, False]


def test_matches_float64_reference_at_random_points(rng):
  tables = random_tables(rng)
  x = rng.uniform(size=(200, 3))
  ours = hash_encoding.hash_grid_features(tables, jnp.asarray(x, jnp.float32), RESOLUTIONS)
  np.testing.assert_allclose(ours, reference_features(tables, x, RESOLUTIONS), atol=2e-5)


def test_matches_reference_on_cell_boundaries_and_box_faces(rng):
  tables = random_tables(rng)
  # Vertices of the finest dense level are cell boundaries of every level whose resolution divides 8.
  grid = rng.integers(0, 9, size=(60, 3)) / 8.0
  faces = rng.uniform(size=(60, 3))
  faces[np.arange(60), rng.integers(0, 3, 60)] = rng.choice([0.0, 1.0], 60)
  corners = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
  x = np.concatenate([grid, faces, corners])
  ours = hash_encoding.hash_grid_features(tables, jnp.asarray(x, jnp.float32), RESOLUTIONS)
  np.testing.assert_allclose(ours, reference_features(tables, x, RESOLUTIONS), atol=2e-5)
  # At a vertex the interpolation is that vertex's own row.
  row = reference_row([8, 0, 8], 8, TABLE_SIZE)
  np.testing.assert_allclose(ours[-1, 2:4], tables[1, row], atol=1e-6)


def test_continuous_across_cell_boundaries(rng):
  tables = random_tables(rng)
  boundary = np.array([[3 / 8, 0.3, 0.7], [0.5, 0.5, 0.5]])
  eps = np.array([1e-4, 0.0, 0.0])
  below = hash_encoding.hash_grid_features(tables, jnp.asarray(boundary - eps, jnp.float32), RESOLUTIONS)
  above = hash_encoding.hash_grid_features(tables, jnp.asarray(boundary + eps, jnp.float32), RESOLUTIONS)
  assert np.max(np.abs(below - above)) < 0.05


def test_points_outside_the_box_are_clamped(rng):
  tables = random_tables(rng)
  x = rng.uniform(-5, 6, size=(100, 3))
  x[:5] = [[np.inf, 0.5, 0.5], [-np.inf, 2.0, 0.1], [1e30, -1e30, 0.5], [1.0 + 1e-7, -1e-7, 0.5], [2, 2, 2]]
  cells, frac = hash_encoding.grid_cells(jnp.asarray(x, jnp.float32), RESOLUTIONS)
  assert np.all(np.asarray(cells) <= RESOLUTIONS[:, None] - 1)  # the upper corner is a grid vertex
  assert np.all((np.asarray(frac) >= 0) & (np.asarray(frac) <= 1))
  rows = hash_encoding.cell_rows(cells, RESOLUTIONS, TABLE_SIZE)
  assert np.all((np.asarray(rows) >= 0) & (np.asarray(rows) < TABLE_SIZE))
  ours = hash_encoding.hash_grid_features(tables, jnp.asarray(x, jnp.float32), RESOLUTIONS)
  assert np.all(np.isfinite(ours))
  np.testing.assert_allclose(ours, reference_features(tables, np.clip(x, 0, 1), RESOLUTIONS), atol=2e-5)


def test_rows_match_reference_for_dense_and_hashed_levels(rng):
  for level, n in enumerate(RESOLUTIONS):
    cells = rng.integers(0, n, size=(50, 3))
    ours = hash_encoding.cell_rows(jnp.asarray(cells.astype(np.uint32))[:, None, :], RESOLUTIONS[level:level + 1],
                                   TABLE_SIZE)[:, 0]
    expected = [[reference_row(list(c + offset), n, TABLE_SIZE) for offset in hash_encoding.CORNERS.astype(int)]
                for c in cells]
    np.testing.assert_array_equal(ours, expected)
  # Dense levels give every vertex its own row.
  n = RESOLUTIONS[1]
  grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
  rows = hash_encoding.cell_rows(jnp.asarray(grid.astype(np.uint32))[:, None, :], RESOLUTIONS[1:2], TABLE_SIZE)
  assert len(np.unique(np.asarray(rows))) == (n + 1) ** 3


def test_gradients_match_finite_differences(rng):
  tables = jnp.asarray(rng.normal(size=(4, TABLE_SIZE, 2)), jnp.float64 if jax.config.x64_enabled else jnp.float32)
  x = jnp.asarray(rng.uniform(size=(30, 3)), jnp.float32)
  probe = jnp.asarray(rng.normal(size=(30, 8)), jnp.float32)
  loss = lambda t: jnp.sum(hash_encoding.hash_grid_features(t, x, RESOLUTIONS) * probe)
  grads = np.asarray(jax.grad(loss)(tables))
  # The loss is linear in the tables: a central difference of any step is exact up to rounding.
  touched = np.argwhere(np.abs(grads) > 1e-3)
  assert len(touched) > 20
  for level, row, feature in touched[rng.choice(len(touched), 8, replace=False)]:
    step = jnp.zeros_like(tables).at[level, row, feature].set(0.5)
    numeric = (float(loss(tables + step)) - float(loss(tables - step))) / 1.0
    np.testing.assert_allclose(grads[level, row, feature], numeric, rtol=2e-3, atol=2e-3)
  # Rows no point touches get no gradient.
  assert np.sum(np.any(grads != 0, axis=-1)) <= 30 * 4 * 8


def test_module_init_and_output_shape(rng):
  encoding = hash_encoding.HashEncoding(num_levels=3, features_per_level=4, log2_table_size=8, min_resolution=2,
                                        max_resolution=16)
  x = jnp.asarray(rng.uniform(size=(5, 7, 3)), jnp.float32)
  params = encoding.init(jax.random.key(0), x)["params"]
  assert params["tables"].shape == (3, 256, 4)
  assert float(jnp.max(jnp.abs(params["tables"]))) <= 1e-4 and float(jnp.std(params["tables"])) > 1e-5
  assert encoding.apply({"params": params}, x).shape == (5, 7, 12)


@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_jit_and_vmap_agree(rng, transform):
  tables = random_tables(rng)
  x = jnp.asarray(rng.uniform(size=(6, 10, 3)), jnp.float32)
  plain = hash_encoding.hash_grid_features(tables, x, RESOLUTIONS)
  fn = lambda t, p: hash_encoding.hash_grid_features(t, p, RESOLUTIONS)
  other = jax.jit(fn)(tables, x) if transform == "jit" else jax.vmap(fn, in_axes=(None, 0))(tables, x)
  np.testing.assert_allclose(plain, other, atol=1e-6)
