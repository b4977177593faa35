import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf import config as config_lib
from jaxnerf.nerf import fields
from jaxnerf.nerf import model
from jaxnerf.core import rays as rays_lib
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import mlp_field
from jaxnerf.nerf import hash_field
from jaxnerf.nerf import layers


def small_config(**changes):
  config = config_lib.base_config()
  config.model.mlp.depth, config.model.mlp.width, config.model.mlp.skip_layer = 4, 32, 2
  config.model.mlp.view_width = 16
  config.model.hierarchical.num_coarse_samples, config.model.hierarchical.num_fine_samples = 16, 24
  config.model.hash.num_levels, config.model.hash.log2_table_size, config.model.hash.max_resolution = 4, 10, 64
  config.model.proposal.num_levels, config.model.proposal.log2_table_size = 2, 8
  for path, value in changes.items():
    group, field = path.rsplit(".", 1)
    node = config
    for part in group.split("."):
      node = node[part]
    node[field] = value
  return config


def random_rays(rng, n):
  origins = rng.normal(size=(n, 3)) * 0.3 + np.array([0, 0, 4.0])
  directions = rng.normal(size=(n, 3)) * 0.2 + np.array([0, 0, -1.0])
  return rays_lib.Rays(*(jnp.asarray(a, jnp.float32) for a in
                         (origins, directions, directions / np.linalg.norm(directions, axis=-1, keepdims=True))))


def unit(rng, shape):
  v = rng.normal(size=shape)
  return jnp.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True), jnp.float32)


def test_paper_mlp_shapes_and_skip_connection():
  mlp = mlp_field.NeRFMLP(depth=8, width=256, skip_layer=4, view_width=128)
  points, viewdirs = jnp.ones((5, 7, 3)), unit(np.random.default_rng(0), (5, 3))
  params = mlp.init(jax.random.key(0), points, viewdirs)["params"]
  kernels = {name: p["kernel"].shape for name, p in params.items()}
  assert kernels["Dense_0"] == (63, 256)
  assert kernels["Dense_4"] == (256 + 63, 256)  # the layer after the skip sees [h, x]
  assert sum(k[0] * k[1] for k in kernels.values()) == (
      63 * 256 + 6 * 256 * 256 + 319 * 256 + 256 * 1 + 256 * 256 + (256 + 27) * 128 + 128 * 3)
  rgb, raw_density = mlp.apply({"params": params}, points, viewdirs)
  assert rgb.shape == (5, 7, 3) and raw_density.shape == (5, 7)
  assert np.all((np.asarray(rgb) > 0) & (np.asarray(rgb) < 1))


@pytest.mark.parametrize("field_name", ["mlp", "hash"])
def test_view_direction_changes_colour_not_density(rng, field_name):
  field = fields.FIELDS[field_name].build(small_config(), small_config().data.scene_box)
  points = jnp.asarray(rng.uniform(-1, 1, size=(3, 5, 3)), jnp.float32)
  v1, v2 = unit(rng, (3, 3)), unit(rng, (3, 3))
  params = field.init(jax.random.key(0), points, v1)
  # Perturb every parameter so that no part of the network is at a symmetric initial value.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  rgb1, d1 = field.apply(params, points, v1)
  rgb2, d2 = field.apply(params, points, v2)
  np.testing.assert_array_equal(d1, d2)
  assert np.max(np.abs(rgb1 - rgb2)) > 1e-4
  # Each ray's samples see that ray's view direction: evaluating rays one at a time changes nothing.
  for r in range(3):
    rgb_r, _ = field.apply(params, points[r:r + 1], v1[r:r + 1])
    np.testing.assert_allclose(rgb1[r], rgb_r[0], atol=1e-6)


def test_hash_fields_are_empty_outside_the_scene_box(rng):
  config = small_config()
  points = jnp.asarray(rng.uniform(-3, 3, size=(4, 50, 3)), jnp.float32)
  viewdirs = unit(rng, (4, 3))
  inside = np.all(np.abs(np.asarray(points)) <= 1.5, axis=-1)
  assert 0 < inside.sum() < inside.size
  for field in (hash_field.build(config, config.data.scene_box), hash_field.build_proposal(config, config.data.scene_box)):
    params = field.init(jax.random.key(0), points, viewdirs)
    _, raw = field.apply(params, points, viewdirs)
    density = np.asarray(field.density_activation(raw))
    assert np.all(density[~inside] == 0) and np.all(density[inside] > 0) and np.all(np.isfinite(density))


def test_trunc_exp_gradient_is_clipped():
  np.testing.assert_allclose(layers.trunc_exp(jnp.float32(2.0)), np.exp(2.0), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(layers.trunc_exp)(jnp.float32(2.0)), np.exp(2.0), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(layers.trunc_exp)(jnp.float32(40.0)), np.exp(15.0), rtol=1e-6)


@pytest.mark.parametrize("sampler,field_name,level_samples", [
    ("hierarchical", "mlp", [16, 40]), ("hierarchical", "hash", [16, 40]), ("proposal", "hash", [12, 10]),
    ("proposal", "mlp", [12, 10])])
def test_levels_shapes_determinism_and_gradients(rng, sampler, field_name, level_samples):
  config = small_config(**{"model.sampler": sampler, "model.field": field_name, "model.density_noise": 1.0,
                           "model.proposal.num_samples": (12,), "model.proposal.num_final_samples": 10})
  nerf = model.build_model(config)
  rays = random_rays(rng, 8)
  variables = nerf.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  assert set(variables["params"]) == {"fields_0", "fields_1"}
  levels = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(2), randomized=False)
  assert [level.out.weights.shape for level in levels] == [(8, n) for n in level_samples]
  assert [level.samples.edges.shape for level in levels] == [(8, n + 1) for n in level_samples]
  assert levels[-1].out.rgb.shape == (8, 3)
  assert (levels[0].out.rgb is None) == (sampler == "proposal")
  again = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(3), randomized=False)[-1]
  np.testing.assert_array_equal(levels[-1].out.rgb, again.out.rgb)  # evaluation ignores the key
  jittered = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(3), randomized=True)[-1]
  assert np.max(np.abs(jittered.out.depth - levels[-1].out.depth)) > 0
  for level in levels:
    assert np.all(np.diff(np.asarray(level.samples.edges), axis=-1) >= 0)
    assert np.all(np.asarray(level.samples.t) >= 2.0 - 1e-5) and np.all(np.asarray(level.samples.t) <= 6.0 + 1e-5)

  def loss(params):
    levels = nerf.apply({"params": params}, rays, 2.0, 6.0, jax.random.key(4), randomized=True)
    colour = sum(jnp.mean((level.out.rgb - 0.5) ** 2) for level in levels if level.out.rgb is not None)
    return colour + sum(jnp.mean(level.out.weights) for level in levels)

  grads = jax.grad(loss)(variables["params"])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads["fields_1"]) if g.ndim > 1)


def test_coarse_only_model(rng):
  nerf = model.build_model(small_config(**{"model.hierarchical.num_fine_samples": 0,
                                           "model.mlp.use_viewdirs": False}))
  rays = random_rays(rng, 3)
  variables = nerf.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  assert set(variables["params"]) == {"fields_0"}
  levels = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  assert len(levels) == 1 and levels[0].out.rgb.shape == (3, 3)


def test_background_per_ray(rng):
  """A field with no density shows each ray's own background colour."""
  nerf = model.build_model(small_config(**{"model.sampler": "proposal", "model.field": "hash"}))
  rays = random_rays(rng, 4)
  variables = nerf.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  variables = jax.tree.map(jnp.zeros_like, variables)
  variables["params"]["fields_1"]["Dense_1"]["bias"] = jnp.full_like(
      variables["params"]["fields_1"]["Dense_1"]["bias"], -1e4)
  background = jnp.asarray(rng.uniform(size=(4, 3)), jnp.float32)
  out = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(1), randomized=False, background=background)[-1].out
  np.testing.assert_allclose(out.rgb, background, atol=1e-6)


@pytest.mark.parametrize("path,value", [("model.field", "siren"), ("model.sampler", "uniform"),
                                        ("model.hash.density_activation", "exp")])
def test_unknown_choices_are_config_errors(path, value):
  with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
    model.build_model(small_config(**{"model.field": "hash", path: value}))
