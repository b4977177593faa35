import math
import tempfile

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf.run import checkpoints
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import occupancy
from jaxnerf.run import rendering as render
from jaxnerf.run import train as train_lib
from jaxnerf.core import contraction
from jaxnerf.run import state as state_lib
from jaxnerf.data import scene as scene_lib
from test_model import random_rays
from test_model import small_config

BOX = (-1.0, -0.5, 0.0, 1.0, 1.5, 3.0)  # unequal sides catch swapped axes


def numpy_cell_of(points, resolution, box):
  """Brute force: the (i, j, k) cell of each point, or None outside the box (float64)."""
  lo, hi = np.asarray(box[:3]), np.asarray(box[3:])
  out = []
  for p in np.asarray(points, np.float64).reshape(-1, 3):
    if np.any(p < lo) or np.any(p > hi):
      out.append(None)
      continue
    ijk = tuple(min(int(math.floor((p[a] - lo[a]) / (hi[a] - lo[a]) * resolution)), resolution - 1) for a in range(3))
    out.append(ijk)
  return out


UNIT = (0.0, 0.0, 0.0, 1.0, 1.0, 1.0)


def test_cell_points_centres_and_random_points_stay_in_their_cells():
  resolution = 5
  cells = np.arange(resolution**3)
  centres = np.asarray(occupancy.cell_points(jnp.asarray(cells, jnp.int32), resolution))
  i, j, k = cells // 25, (cells // 5) % 5, cells % 5
  np.testing.assert_allclose(centres, (np.stack([i, j, k], -1) + 0.5) / resolution, atol=1e-6)
  jittered = occupancy.cell_points(jnp.asarray(cells, jnp.int32), resolution, jax.random.key(3))
  assert numpy_cell_of(jittered, resolution, UNIT) == list(zip(i, j, k))


def cell_index_density(resolution):
  """A density of unit-cube points that depends only on the cell a point is in: 1 + its flat index."""

  def density(points):
    ijk = jnp.clip(jnp.floor(points * resolution).astype(jnp.int32), 0, resolution - 1)
    return 1.0 + ((ijk[:, 0] * resolution + ijk[:, 1]) * resolution + ijk[:, 2]).astype(jnp.float32)

  return density


def test_refresh_against_numpy_sweep():
  resolution, num_cells, decay = 4, 24, 0.5  # 64 cells, 24 per update: the sweep wraps around
  density = cell_index_density(resolution)
  grid = jnp.zeros((resolution,) * 3, jnp.float32)
  reference = np.zeros(resolution**3)
  for update in range(5):
    grid = occupancy.refresh(grid, density, jax.random.key(update), update, num_cells, decay)
    reference *= decay
    cells = (np.arange(num_cells) + (update % 3) * num_cells) % resolution**3
    reference[cells] = np.maximum(reference[cells], 1.0 + cells)
    np.testing.assert_allclose(np.asarray(grid).reshape(-1), reference, rtol=1e-6)
  # Three updates without decay cover every cell.
  full = jnp.zeros((resolution,) * 3, jnp.float32)
  for update in range(3):
    full = occupancy.refresh(full, density, jax.random.key(update), update, num_cells, 1.0)
  # Non-finite densities (points beyond infinity under contraction) count as empty.
  nan_density = lambda points: jnp.where(points[:, 0] < 0.5, jnp.inf, jnp.nan)
  assert np.all(np.asarray(occupancy.refresh(jnp.zeros((2, 2, 2)), nan_density, jax.random.key(0), 0, 8)) == 0.0)
  np.testing.assert_array_equal(np.asarray(full).reshape(-1), 1.0 + np.arange(resolution**3))


def test_occupied_by_opacity_across_a_cell_or_above_the_mean_with_a_margin_of_one_cell():
  # Cells of side 0.5: opacity 0.1 is density -ln(0.9) / 0.5 = 0.2107.
  grid = np.zeros((5, 5, 5), np.float32)
  grid[2, 2, 0:4] = [0.0, 0.2, 0.22, 30.0]  # mean 0.2416: the opacity rules, cells (2, 2, 2) and (2, 2, 3) are dense
  expected = np.zeros((5, 5, 5), bool)
  expected[1:4, 1:4, 1:5] = True  # and their neighbours
  np.testing.assert_array_equal(np.asarray(occupancy.occupied(jnp.asarray(grid), 0.5, 0.1)), expected)
  small = np.zeros((5, 5, 5), np.float32)
  small[0, 0, 4] = 0.003  # mean below the opacity's density
  expected = np.zeros((5, 5, 5), bool)
  expected[0:2, 0:2, 3:5] = True
  np.testing.assert_array_equal(np.asarray(occupancy.occupied(jnp.asarray(small), 0.5, 0.1)), expected)
  assert occupancy.grid_cell_size((0.0, 0.0, 0.0, 2.0, 3.0, 4.0), False, 4) == 0.5


def test_contracted_cell_lengths_against_finite_differences():
  """With contraction, a cell's length is the scene distance spanned by its contracted side along the radius,
  here from central differences of the inverse contraction in float64."""
  resolution = 8
  lengths = np.asarray(occupancy.grid_cell_size(None, True, resolution))
  side = 4.0 / resolution  # [-2, 2]^3 in contracted space

  def uncontract(y):
    s = np.linalg.norm(y)
    return y if s <= 1.0 else y / (s * (2.0 - s))

  for ijk in [(4, 4, 4), (5, 4, 4), (6, 5, 4), (7, 4, 4), (7, 7, 1), (6, 6, 6), (7, 7, 7)]:
    centre = (np.array(ijk) + 0.5) * side - 2.0
    s = np.linalg.norm(centre)
    if s >= 2.0:
      assert np.isinf(lengths[ijk])  # beyond infinity
      continue
    u, h = centre / s, 1e-6
    expected = np.linalg.norm(uncontract(centre + h * u) - uncontract(centre - h * u)) / (2 * h) * side
    np.testing.assert_allclose(lengths[ijk], expected, rtol=1e-4, err_msg=str(ijk))
  assert lengths[4, 4, 4] == side and lengths[7, 4, 4] > 10 * side


@pytest.mark.parametrize("outside", [False, True])
def test_lookup_against_brute_force(rng, outside):
  resolution = 6
  cells = rng.random((resolution,) * 3) < 0.4
  lo, hi = np.asarray(BOX[:3]), np.asarray(BOX[3:])
  points = lo + rng.uniform(-0.2, 1.2, size=(500, 3)) * (hi - lo)
  # Points just either side of cell boundaries, and exactly on the box faces (inside: their edge cells).
  near_boundaries = rng.integers(0, resolution + 1, size=(200, 3)) / resolution + rng.choice([-1e-4, 1e-4], (200, 3))
  faces = rng.uniform(0.0, 1.0, size=(200, 3))
  faces[np.arange(200), rng.integers(0, 3, 200)] = rng.integers(0, 2, 200)
  points = np.concatenate([points, lo + near_boundaries * (hi - lo), lo + faces * (hi - lo)])
  unit, inside = contraction.unit_coordinates(jnp.asarray(points, jnp.float32), BOX, False)
  got = np.asarray(occupancy.lookup(jnp.asarray(cells), unit, inside, outside))
  expected = [outside if c is None else cells[c] for c in numpy_cell_of(points.astype(np.float32), resolution, BOX)]
  np.testing.assert_array_equal(got, expected)


def toy_field(points, viewdirs):
  """points [m, 1, 3], viewdirs [m, 3] -> rgb [m, 1, 3], raw density [m, 1]."""
  rgb = jax.nn.sigmoid(points * 2.0 + viewdirs[:, None, :])
  return rgb, jnp.sin(points.sum(-1)) * 3.0


@pytest.mark.parametrize("budget", [7, 40, 1000])
def test_evaluate_occupied_equals_masked_full_evaluation(rng, budget):
  n, s = 9, 13
  points = jnp.asarray(rng.normal(size=(n, s, 3)), jnp.float32)
  viewdirs = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
  mask = rng.random((n, s)) < 0.3
  rgb, raw, calls = jax.jit(occupancy.evaluate_occupied, static_argnums=(0, 4, 5))(
      toy_field, points, viewdirs, jnp.asarray(mask), budget, -1e4)
  full_rgb = jax.nn.sigmoid(points * 2.0 + viewdirs[:, None, :])
  full_raw = jnp.sin(points.sum(-1)) * 3.0
  np.testing.assert_allclose(np.asarray(raw), np.where(mask, full_raw, -1e4), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rgb), np.where(mask[..., None], full_rgb, 0.0), rtol=1e-6, atol=1e-6)
  assert int(calls) == math.ceil(mask.sum() / budget)


def test_evaluate_occupied_with_nothing_occupied_makes_no_call():
  points = jnp.ones((4, 5, 3))
  rgb, raw, calls = occupancy.evaluate_occupied(toy_field, points, jnp.ones((4, 3)), jnp.zeros((4, 5), bool), 8, -1e4)
  assert int(calls) == 0
  np.testing.assert_array_equal(np.asarray(raw), -1e4)
  np.testing.assert_array_equal(np.asarray(rgb), 0.0)


@pytest.mark.parametrize("budget", [7, 60])  # the masked samples overflow 7 and fit 60
def test_evaluate_in_one_call_values_and_gradients_equal_masked_full_evaluation(rng, budget):
  n, s = 9, 13
  points = jnp.asarray(rng.normal(size=(n, s, 3)), jnp.float32)
  viewdirs = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
  mask = jnp.asarray(rng.random((n, s)) < 0.3)
  rgb_weights = jnp.asarray(rng.normal(size=(n, s, 3)), jnp.float32)
  raw_weights = jnp.asarray(rng.normal(size=(n, s)), jnp.float32)

  def field(w):
    return lambda p, d: (jax.nn.sigmoid(p * w[:3] + d[:, None, :]), jnp.sin(p @ w[3:]) * 3.0)

  def skipping(w):
    rgb, raw, overflow = occupancy.evaluate_in_one_call(field(w), points, viewdirs, mask, budget, -1e4)
    return jnp.sum(rgb * rgb_weights) + jnp.sum(jnp.where(mask, raw, 0.0) * raw_weights), (rgb, raw, overflow)

  def masked_full(w):
    rgb, raw = field(w)(points, viewdirs)
    rgb = jnp.where(mask[..., None], rgb, 0.0)
    return jnp.sum(rgb * rgb_weights) + jnp.sum(jnp.where(mask, raw, 0.0) * raw_weights), (rgb, raw)

  w = jnp.asarray([0.5, -1.0, 2.0, 0.3, 0.7, -0.2], jnp.float32)
  (_, (rgb, raw, overflow)), grad = jax.jit(jax.value_and_grad(skipping, has_aux=True))(w)
  (_, (full_rgb, full_raw)), full_grad = jax.value_and_grad(masked_full, has_aux=True)(w)
  assert bool(overflow) == (int(mask.sum()) > budget)
  np.testing.assert_allclose(np.asarray(raw), np.where(mask, full_raw, -1e4), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(rgb), np.asarray(full_rgb), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(full_grad), rtol=1e-5, atol=1e-5)


def training_setup(rng, **changes):
  config = small_config(**{"model.sampler": "proposal", "model.field": "hash", "occupancy.resolution": 8,
                           "occupancy.cells_per_update": 128, "occupancy.update_every": 2, "train.batch_size": 32,
                           **changes})
  renderer = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, renderer, optimizer)
  batch = {"rays": random_rays(rng, 32), "rgb": jnp.asarray(rng.random((32, 3)), jnp.float32)}
  return config, renderer, train_lib.make_train_step(renderer, optimizer, config, scene_lib.of_settings(config.data)), state, batch


@pytest.mark.parametrize("budgets,overflows", [((1.0,), 0), ((1e-3,), 2)])
def test_training_through_a_grid_of_occupied_cells_equals_plain_training(rng, budgets, overflows):
  """Every cell occupied: one step skipping empty space (on compacted samples that fit the budget, or on all
  samples when they overflow it) equals a step that does not skip."""
  _, _, plain_step, state, batch = training_setup(rng)
  _, _, skip_step, _, _ = training_setup(rng, **{"occupancy.skip_in_training": True,
                                                 "occupancy.train_skip_budgets": budgets})
  state = state.replace(step=jnp.asarray(100, jnp.int32), density_grid=jnp.full((8, 8, 8), 1e4, jnp.float32))
  plain, _ = plain_step(state, batch, jax.random.key(3))
  skipping, metrics = skip_step(state, batch, jax.random.key(3))
  assert int(metrics["skip_overflow"]) == overflows
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(skipping.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_training_skips_empty_cells_only_after_the_grids_first_sweep(rng):
  """The loss of a step that skips empty space is the loss of a render with the grid's occupied cells, once every
  cell has been refreshed (8^3 cells, 128 per update, an update every 2 steps: from step 8); before that, the loss
  of a plain render."""
  config, renderer, step, state, batch = training_setup(rng, **{"occupancy.skip_in_training": True,
                                                                "occupancy.train_skip_budgets": (1.0,),
                                                                "loss.distortion_weight": 0.0})
  grid = np.zeros((8, 8, 8), np.float32)
  grid[4:6, 4:6, 4:6] = 1e4  # with the one-cell margin, cells 3..6 are occupied
  key = jax.random.key(5)

  def render_loss(occupied):
    # As in the train step: the loss key is split off for the render after the background colour.
    skip = None if occupied is None else render.skipping(occupied, config, scene_lib.of_settings(config.data), training=True)
    levels = renderer.apply({"params": state.params}, batch["rays"], 2.0, 6.0, key, randomized=True, skip=skip)
    return float(jnp.mean((levels[-1].out.rgb - batch["rgb"]) ** 2))

  occupied = occupancy.occupied(jnp.asarray(grid), 3.0 / 8, 0.01)
  assert 0 < int(occupied.sum()) < 8**3
  for step_number, expected in ((7, render_loss(None)), (8, render_loss(occupied))):
    at = state.replace(step=jnp.asarray(step_number, jnp.int32), density_grid=jnp.asarray(grid))
    _, metrics = step(at, batch, key)
    np.testing.assert_allclose(float(metrics["loss_rgb"]), expected, rtol=1e-5)
  assert render_loss(None) != pytest.approx(render_loss(occupied), rel=1e-3)


@pytest.mark.parametrize("sampler,field_name,contract", [("proposal", "hash", False), ("proposal", "hash", True),
                                                         ("hierarchical", "mlp", False), ("mip", "mlp", False)])
def test_render_with_every_cell_occupied_equals_plain_render(rng, sampler, field_name, contract):
  config = small_config(**{"model.sampler": sampler, "model.field": field_name, "occupancy.skip_budget": 0.1,
                           "model.contraction": contract})
  renderer = model_lib.build_model(config)
  rays = random_rays(rng, 32)
  rays = rays._replace(radii=jnp.full((32, 1), 0.002)) if sampler == "mip" else rays
  params = renderer.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  plain = renderer.apply(params, rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  every = jnp.ones((8, 8, 8), bool)
  skipping = renderer.apply(params, rays, 2.0, 6.0, jax.random.key(1), randomized=False,
                            skip=render.skipping(every, config, scene_lib.of_settings(config.data), training=False))
  for a, b in zip(plain, skipping):
    if a.out.rgb is not None:
      np.testing.assert_allclose(np.asarray(a.out.rgb), np.asarray(b.out.rgb), atol=1e-5)
    np.testing.assert_allclose(np.asarray(a.out.weights), np.asarray(b.out.weights), atol=1e-5)
  assert all(int(level.field_calls) >= 1 for level in skipping)


def test_render_skips_empty_cells(rng):
  """With only one cell occupied, a hash-field render equals the plain render of a field whose density is zero
  outside that cell."""
  config = small_config(**{"model.sampler": "proposal", "model.field": "hash"})
  renderer = model_lib.build_model(config)
  rays = random_rays(rng, 64)
  params = renderer.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  # Raise the density so that the cell matters, then compare with and without the empty cells' density.
  cells = np.zeros((2, 2, 2), bool)
  cells[1, 1, 1] = True
  levels = renderer.apply(params, rays, 2.0, 6.0, jax.random.key(1), randomized=False,
                          skip=render.skipping(jnp.asarray(cells), config, scene_lib.of_settings(config.data), training=False))
  for level in levels:
    points = (np.asarray(rays.origins)[:, None, :] +
              np.asarray(level.samples.t)[..., None] * np.asarray(rays.directions)[:, None, :])
    in_cell = np.all((points >= 0.0) & (points <= 1.5), axis=-1)
    # Outside the occupied cell the samples have no weight at all.
    assert np.all(np.asarray(level.out.weights)[~in_cell] == 0.0)


@pytest.mark.parametrize("skip_empty", [True, False])
def test_train_step_refreshes_the_grid_every_update_every_steps(rng, skip_empty):
  config = small_config(**{"model.sampler": "proposal", "model.field": "hash", "occupancy.resolution": 8,
                           "occupancy.cells_per_update": 128, "occupancy.update_every": 2, "train.batch_size": 32,
                           "occupancy.skip_empty": skip_empty})
  renderer = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, renderer, optimizer)
  step = train_lib.make_train_step(renderer, optimizer, config, scene_lib.of_settings(config.data))
  rays = random_rays(rng, 32)
  batch = {"rays": rays, "rgb": jnp.asarray(rng.random((32, 3)), jnp.float32)}
  grids = [np.asarray(state.density_grid).reshape(-1)]
  for i in range(5):
    state, _ = step(state, batch, jax.random.key(i))
    grids.append(np.asarray(state.density_grid).reshape(-1))
  if not skip_empty:  # nothing reads the grid: it is never refreshed
    assert not np.any(grids)
    return
  # Updates after steps 0, 2, 4 refresh cells 0-127, 128-255, 256-383 (and decay all).
  assert np.all(grids[1][:128] > 0) and np.all(grids[1][128:] == 0)
  np.testing.assert_array_equal(grids[2], grids[1])
  assert np.all(grids[3][128:256] > 0) and np.all(grids[3][256:] == 0)
  np.testing.assert_allclose(grids[3][:128], grids[2][:128] * 0.95, rtol=1e-6)  # decayed, not refreshed
  np.testing.assert_array_equal(grids[4], grids[3])
  assert np.all(grids[5][256:384] > 0) and np.all(grids[5][384:] == 0)


@flax.struct.dataclass
class StateWithoutGrid:
  step: jnp.ndarray
  params: dict
  opt_state: object
  key: jnp.ndarray
  nonfinite_streak: jnp.ndarray
  nonfinite_total: jnp.ndarray


def test_checkpoint_without_grid_restores_with_the_templates_grid():
  config = small_config(**{"model.sampler": "proposal", "model.field": "hash", "occupancy.resolution": 4})
  renderer = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, renderer, optimizer)
  params = jax.tree.map(lambda x: x + 1.0, state.params)
  # An optimizer state after one update, so that a reset to the template's would show.
  _, opt_state = optimizer.update(jax.tree.map(jnp.ones_like, params), optimizer.init(params), params)
  old = StateWithoutGrid(jnp.asarray(7, jnp.int32), params, opt_state, state.key + 3,
                         jnp.asarray(2, jnp.int32), jnp.asarray(5, jnp.int32))
  with tempfile.TemporaryDirectory() as directory:
    with checkpoints.manager(directory) as mngr:
      checkpoints.save(mngr, 7, old)
      template = state.replace(density_grid=jnp.full((4, 4, 4), 2.0))
      restored = checkpoints.restore_latest(mngr, template, added_fields=state_lib.ADDED_FIELDS)
  assert (int(restored.step), int(restored.nonfinite_streak), int(restored.nonfinite_total)) == (7, 2, 5)
  for a, b in zip(jax.tree.leaves((restored.params, restored.opt_state, restored.key)),
                  jax.tree.leaves((params, opt_state, state.key + 3))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(restored.density_grid), 2.0)
  # A new field's density is about trunc_exp(0) = 1 everywhere in the box.
  full = np.asarray(occupancy.full_grid(state_lib.grid_density(renderer, state.params), config.occupancy,
                                        config.data.scene_box, False, jax.random.key(0)))
  assert full.shape == (4, 4, 4) and np.all((full > 0.5) & (full < 2.0))


@pytest.mark.parametrize("stages", [2, 5])
def test_front_to_back_leaves_out_only_samples_behind_opaque_rays(rng, stages):
  """Early ray termination against a numpy float64 composite of the full evaluation: a sample is left out exactly
  when the transmittance in front of its group is below the threshold, and the colour changes by at most that."""
  n, s, min_transmittance = 40, 20, 1e-3
  points = jnp.asarray(rng.normal(size=(n, s, 3)), jnp.float32)
  viewdirs = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
  mask = rng.random((n, s)) < 0.8
  lengths = rng.uniform(0.0, 1.5, size=(n, s))
  density = lambda raw: np.maximum(raw, 0.0)
  optical_depth = lambda raw: jnp.maximum(raw, 0.0) * jnp.asarray(lengths[:, :raw.shape[1]], jnp.float32)
  skip = occupancy.Skip(None, (0.0,) * 6, False, (1.0,), stages=stages, min_transmittance=min_transmittance)
  rgb, raw, _ = occupancy.evaluate_front_to_back(toy_field, points, viewdirs, jnp.asarray(mask), 0.3, -1e4, skip,
                                                 optical_depth)
  full_rgb = np.asarray(jax.nn.sigmoid(points * 2.0 + viewdirs[:, None, :]), np.float64)
  full_raw = np.where(mask, np.sin(np.asarray(points, np.float64).sum(-1)) * 3.0, -1e4)
  bounds = [round(k * s / stages) for k in range(stages + 1)]
  depth = np.cumsum(density(full_raw) * lengths, axis=-1)
  expected = mask.copy()
  for lo, hi in zip(bounds[1:-1], bounds[2:]):
    expected[:, lo:hi] &= (np.exp(-depth[:, lo - 1]) >= min_transmittance)[:, None]
  assert 0 < expected.sum() < mask.sum()  # some rays stop early
  np.testing.assert_array_equal(np.asarray(raw) > -1e4, expected)
  np.testing.assert_allclose(np.asarray(raw), np.where(expected, full_raw, -1e4), atol=1e-5)

  def composite(rgb, raw):
    optical = density(raw) * lengths
    weights = (1 - np.exp(-optical)) * np.exp(-(np.cumsum(optical, -1) - optical))
    return np.sum(weights[..., None] * rgb, axis=-2)

  difference = np.abs(composite(np.asarray(rgb, np.float64), np.asarray(raw, np.float64)) -
                      composite(full_rgb, full_raw))
  assert np.max(difference) <= min_transmittance
