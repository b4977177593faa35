"""The K-Planes field (nerf/planes_field.py): its interpolation and multiscale features against float64 numpy
references, its heads, and its place in the model, the occupancy grid, training and the config."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import interpolate

from jaxnerf import config as config_lib
from jaxnerf.data import scene as scene_lib
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import fields
from jaxnerf.nerf import layers
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import planes_field
from jaxnerf.run import rendering as render
from jaxnerf.run import state as state_lib
from jaxnerf.run import train as train_lib
from conftest import REPO
from test_model import random_rays
from test_model import small_config
from test_model import unit

# The reference's own statement of which axes each plane spans (xy, xz, yz), not the module's constant.
AXES = ((0, 1), (0, 2), (1, 2))


def small_planes_config(**changes):
  """small_config with the planes field behind one small proposal level."""
  return small_config(**{"model.field": "planes", "model.sampler": "proposal", "model.planes.resolutions": (4, 8),
                         "model.planes.features": 4, "model.proposal.num_samples": (12,),
                         "model.proposal.num_final_samples": 10, **changes})


def reference_plane(plane, u, v):
  """Brute force, float64: sum over all R x R vertices of the plane [R, R, F] of vertex (i, j)'s value times its
  bilinear hat function max(0, 1 - |u (R - 1) - i|) max(0, 1 - |v (R - 1) - j|), at u, v [n] in [0, 1] -> [n, F]."""
  n = plane.shape[0] - 1
  hat = lambda w: np.maximum(0.0, 1.0 - np.abs(w[:, None] * n - np.arange(n + 1)))  # [points, vertices]
  return np.einsum("pi,pj,ijf->pf", hat(u), hat(v), np.asarray(plane, np.float64))


def reference_features(planes_per_scale, x):
  """Brute force, float64: the whole K-Planes feature vector [n, S * F] of points x [n, 3] in the unit cube."""
  x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
  return np.concatenate([np.prod([reference_plane(planes[p], x[:, a], x[:, b]) for p, (a, b) in enumerate(AXES)],
                                 axis=0) for planes in planes_per_scale], axis=-1)


def edge_and_corner_points(rng, resolution, n):
  """[n, 3] points in the unit cube with some coordinates on vertices i / (R - 1) of the planes' grids: cell edges
  (one coordinate of a plane), corners (both), and the cube's faces 0 and 1."""
  x = rng.uniform(size=(n, 3))
  on_vertex = rng.random((n, 3)) < 0.6
  vertices = rng.integers(0, resolution, size=(n, 3)) / (resolution - 1)
  return np.where(on_vertex, vertices, x)


def test_bilinear_interpolation_matches_scipy_at_random_points_edges_and_corners(rng):
  resolution, num_features = 7, 3  # vertices at k / 6: not exact in float32, as for most resolutions
  planes = rng.normal(size=(3, resolution, resolution, num_features))
  x = np.concatenate([rng.uniform(size=(200, 3)), edge_and_corner_points(rng, resolution, 200),
                      rng.uniform(-0.5, 1.5, size=(50, 3))])  # the last outside the cube: clamped to its faces
  ours = planes_field.interpolate_planes(jnp.asarray(planes, jnp.float32), jnp.asarray(x, jnp.float32))
  assert ours.shape == (len(x), 3, num_features)
  grid = np.linspace(0.0, 1.0, resolution)
  clamped = np.clip(x, 0.0, 1.0)
  for p, (a, b) in enumerate(AXES):
    expected = interpolate.RegularGridInterpolator((grid, grid), planes[p], method="linear")(clamped[:, [a, b]])
    np.testing.assert_allclose(ours[:, p], expected, atol=2e-6)
    np.testing.assert_allclose(ours[:, p], reference_plane(planes[p], clamped[:, a], clamped[:, b]), atol=2e-6)
  # Every point lies in a cell of the grid, the upper faces in the last one, so that no index leaves its plane.
  cell, frac = planes_field.plane_cells(jnp.asarray(x[:, :2], jnp.float32), resolution)
  assert np.all((np.asarray(cell) >= 0) & (np.asarray(cell) <= resolution - 2))
  np.testing.assert_array_equal(np.asarray(frac)[clamped[:, :2] == 1.0], 1.0)
  # At a vertex the interpolation is the vertex's own value.
  i, j = rng.integers(0, resolution, size=(2, 20))
  corners = np.stack([i, j, rng.integers(0, resolution, size=20)], -1) / (resolution - 1)
  at_corners = planes_field.interpolate_planes(jnp.asarray(planes, jnp.float32), jnp.asarray(corners, jnp.float32))
  np.testing.assert_allclose(at_corners[:, 0], planes[0, i, j], atol=2e-6)


def numpy_variables(rng, init, *args):
  """Variables of `init(key, *args)`'s shapes drawn with numpy (jax.random's kernels take seconds to
  compile on CPU): planes uniform in K-Planes' [0.1, 0.5], kernels N(0, 1 / fan_in), the rest N(0, 0.3^2), so
  that no part of the network sits at a symmetric value."""

  def draw(path, leaf):
    name = path[-1].key
    if name.startswith("planes"):
      value = rng.uniform(0.1, 0.5, leaf.shape)
    else:
      value = rng.normal(size=leaf.shape) * (leaf.shape[0] ** -0.5 if name == "kernel" else 0.3)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(init, jax.random.key(0), *args))


def test_multiscale_hadamard_features_match_brute_force(rng):
  encoding = planes_field.PlaneEncoding(resolutions=(2, 3, 5), features=2)
  x = np.concatenate([rng.uniform(size=(100, 3)), edge_and_corner_points(rng, 5, 50)])
  params = numpy_variables(rng, encoding.init, jnp.zeros((1, 3)))["params"]
  planes = [np.asarray(params[f"planes_{s}"]) for s in range(3)]
  assert [p.shape for p in planes] == [(3, 2, 2, 2), (3, 3, 3, 2), (3, 5, 5, 2)]
  ours = jax.jit(encoding.apply)({"params": params}, jnp.asarray(x, jnp.float32))
  assert ours.shape == (len(x), 6)
  np.testing.assert_allclose(ours, reference_features(planes, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("contraction", [False, True])
def test_empty_outside_the_scene_box_unless_contracted(rng, contraction):
  config = small_planes_config(**{"model.contraction": contraction})
  field = fields.FIELDS["planes"].build(config, config.data.scene_box)
  assert field.empty_outside_box
  points = jnp.asarray(rng.uniform(-3, 3, size=(4, 50, 3)), jnp.float32)
  inside = np.all(np.abs(np.asarray(points)) <= 1.5, axis=-1)
  assert 0 < inside.sum() < inside.size
  viewdirs = unit(rng, (4, 3))
  _, raw = jax.jit(field.apply)(numpy_variables(rng, field.init, points, viewdirs), points, viewdirs)
  raw = np.asarray(raw)
  assert raw.shape == (4, 50) and np.all(np.isfinite(raw))
  empty = raw == layers.EMPTY_RAW_DENSITY
  np.testing.assert_array_equal(empty, ~inside & (not contraction))
  assert np.all(np.asarray(field.density_activation(raw))[~empty] > 0)


def test_view_direction_changes_colour_not_density(rng):
  field = fields.FIELDS["planes"].build(small_planes_config(), small_planes_config().data.scene_box)
  points = jnp.asarray(rng.uniform(-1, 1, size=(3, 5, 3)), jnp.float32)
  v1, v2 = unit(rng, (3, 3)), unit(rng, (3, 3))
  params = numpy_variables(rng, field.init, points, v1)
  apply = jax.jit(field.apply)
  rgb1, d1 = apply(params, points, v1)
  rgb2, d2 = apply(params, points, v2)
  assert rgb1.shape == (3, 5, 3) and np.all((np.asarray(rgb1) > 0) & (np.asarray(rgb1) < 1))
  np.testing.assert_array_equal(d1, d2)
  assert np.max(np.abs(rgb1 - rgb2)) > 1e-4
  # Each ray's samples see that ray's view direction: rays one at a time give the same colours.
  for r in range(3):
    np.testing.assert_allclose(rgb1[r], apply(params, points[r:r + 1], v1[r:r + 1])[0][0], atol=1e-6)


def test_gradients_reach_every_plane_and_are_finite(rng):
  config = small_planes_config(**{"model.planes.resolutions": (3, 6, 11)})
  field = fields.FIELDS["planes"].build(config, config.data.scene_box)
  points = jnp.asarray(rng.uniform(-1.6, 1.6, size=(64, 16, 3)), jnp.float32)
  viewdirs = unit(rng, (64, 3))
  params = numpy_variables(rng, field.init, points, viewdirs)["params"]
  probe_rgb, probe_raw = jnp.asarray(rng.normal(size=(64, 16, 3))), jnp.asarray(rng.normal(size=(64, 16)))

  def loss(params):
    rgb, raw = field.apply({"params": params}, points, viewdirs)
    return jnp.sum(rgb * probe_rgb) + jnp.sum(jnp.where(raw > layers.EMPTY_RAW_DENSITY, raw, 0.0) * probe_raw)

  grads = jax.jit(jax.grad(loss))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert len(grads["encoding"]) == 3
  for name, g in grads["encoding"].items():
    # Each of the three planes of each scale gets gradient at many vertices.
    per_plane = np.sum(np.any(np.asarray(g) != 0, axis=-1), axis=(1, 2))
    assert np.all(per_plane >= 4), (name, per_plane)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))


def test_bfloat16_matmuls_keep_float32_params_and_outputs(rng):
  points = jnp.asarray(rng.uniform(-1, 1, size=(8, 16, 3)), jnp.float32)
  viewdirs = unit(rng, (8, 3))
  f32 = fields.FIELDS["planes"].build(small_planes_config(), small_planes_config().data.scene_box)
  bf16 = fields.FIELDS["planes"].build(small_planes_config(**{"model.compute_dtype": "bfloat16"}),
                                       small_planes_config().data.scene_box)
  params = numpy_variables(rng, f32.init, points, viewdirs)
  assert jax.tree.structure(params) == jax.tree.structure(jax.eval_shape(bf16.init, jax.random.key(0), points, viewdirs))
  (rgb32, raw32), (rgb16, raw16) = jax.jit(f32.apply)(params, points, viewdirs), jax.jit(bf16.apply)(
      params, points, viewdirs)
  assert rgb16.dtype == raw16.dtype == jnp.float32
  np.testing.assert_allclose(rgb16, rgb32, atol=0.02)
  np.testing.assert_allclose(raw16, raw32, atol=0.05 * float(np.abs(raw32).max()) + 1e-3)
  assert np.max(np.abs(rgb16 - rgb32)) > 0  # the bfloat16 path is the one taken
  assert "bf16" in jax.jit(bf16.apply).lower(params, points, viewdirs).as_text()


@pytest.mark.parametrize("contraction", [False, True])
def test_model_renders_with_proposal_sampler_and_occupancy_grid(rng, contraction):
  config = small_planes_config(**{"model.contraction": contraction, "occupancy.skip_budget": 0.1})
  renderer = model_lib.build_model(config)
  rays = random_rays(rng, 32)
  variables = numpy_variables(
      rng, lambda key, rays: renderer.init(key, rays, 2.0, 6.0, key, randomized=False), rays)
  assert set(variables["params"]) == {"fields_0", "fields_1"}
  assert set(variables["params"]["fields_1"]["encoding"]) == {"planes_0", "planes_1"}
  render_with = lambda skip: jax.jit(lambda variables, rays: renderer.apply(
      variables, rays, 2.0, 6.0, jax.random.key(1), randomized=False, skip=skip))(variables, rays)
  levels = render_with(None)
  assert [level.out.weights.shape for level in levels] == [(32, 12), (32, 10)]
  assert levels[0].out.rgb is None and levels[-1].out.rgb.shape == (32, 3)
  assert np.all(np.isfinite(levels[-1].out.rgb)) and np.all(np.isfinite(levels[-1].out.depth))
  # With every cell of the occupancy grid occupied, skipping empty space renders the same.
  every = jnp.ones((8, 8, 8), bool)
  skipping = render_with(render.skipping(every, config, scene_lib.of_settings(config.data), training=False))
  np.testing.assert_allclose(skipping[-1].out.rgb, levels[-1].out.rgb, atol=1e-5)
  np.testing.assert_allclose(skipping[-1].out.weights, levels[-1].out.weights, atol=1e-5)


def test_fast_mode_train_step_with_bfloat16_and_skipping(rng):
  """The planes start as in K-Planes, and one step of the fast mode's training (occupancy grid skipping, weight
  decay, bfloat16) moves every plane."""
  config = small_planes_config(**{"model.compute_dtype": "bfloat16", "occupancy.resolution": 8,
                                  "occupancy.cells_per_update": 512, "occupancy.update_every": 1,
                                  "occupancy.skip_in_training": True, "occupancy.train_skip_budgets": (1.0,),
                                  "train.batch_size": 32, "train.lr_init": 1e-2, "train.weight_decay": 1e-6})
  renderer = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, renderer, optimizer)
  planes = jax.tree.leaves(state.params["fields_1"]["encoding"])
  assert len(planes) == 2 and all(np.all((p >= 0.1) & (p <= 0.5)) and np.std(p) > 0.1 for p in planes)
  state = state.replace(step=jnp.asarray(100, jnp.int32), density_grid=jnp.full((8, 8, 8), 1e4, jnp.float32))
  step = train_lib.make_train_step(renderer, optimizer, config, scene_lib.of_settings(config.data))
  batch = {"rays": random_rays(rng, 32), "rgb": jnp.asarray(rng.random((32, 3)), jnp.float32)}
  new_state, metrics = step(state, batch, jax.random.key(3))
  assert np.isfinite(float(metrics["loss_rgb"]))
  old, new = state.params["fields_1"]["encoding"], new_state.params["fields_1"]["encoding"]
  assert all(np.any(np.asarray(old[name]) != np.asarray(new[name])) for name in old)


def test_config_schema_has_planes_defaults_and_demo_config_validates():
  defaults = config_lib.base_config().model.planes
  assert defaults.to_dict() == planes_field.default_config().to_dict()
  assert tuple(defaults.resolutions) == (64, 128, 256, 512)
  assert (defaults.init_low, defaults.init_high, defaults.density_activation) == (0.1, 0.5, "trunc_exp")
  spec = importlib.util.spec_from_file_location("demo_planes", os.path.join(REPO, "configs", "demo_planes.py"))
  demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(demo)
  config = demo.get_config()
  assert config.model.field == "planes" and config.model.sampler == "proposal"
  assert config.occupancy.skip_in_training and config.occupancy.skip_empty
  config_lib.validate(config, 1)


@pytest.mark.parametrize("change", [{"model.planes.resolutions": (1, 8)}, {"model.planes.features": 0},
                                    {"model.planes.init_low": 0.6}, {"model.planes.density_activation": "exp"}])
def test_bad_settings_are_config_errors(change):
  with pytest.raises(ConfigError, match="model.planes"):
    model_lib.build_model(small_planes_config(**change))
