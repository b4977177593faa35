import jax
import jax.numpy as jnp
import numpy as np

from jaxnerf import encoding
from jaxnerf import model
from jaxnerf import rays as rays_lib


def small_nerf(**render):
  return model.NeRF(model.MLP(depth=4, width=32, skip_layer=2, view_width=16),
                    model.RenderSettings(num_coarse_samples=16, num_fine_samples=24, **render))


def random_rays(rng, n):
  origins = rng.normal(size=(n, 3)) * 0.3 + np.array([0, 0, 4.0])
  directions = rng.normal(size=(n, 3)) * 0.2 + np.array([0, 0, -1.0])
  return rays_lib.Rays(*(jnp.asarray(a, jnp.float32) for a in
                         (origins, directions, directions / np.linalg.norm(directions, axis=-1, keepdims=True))))


def test_mlp_shapes_and_skip_connection():
  mlp = model.MLP(depth=8, width=256, skip_layer=4, view_width=128)
  x = jnp.ones((5, 7, encoding.encoded_size(3, 0, 10)))
  view = jnp.ones((5, encoding.encoded_size(3, 0, 4)))
  params = mlp.init(jax.random.key(0), x, view)["params"]
  kernels = {name: p["kernel"].shape for name, p in params.items()}
  assert kernels["Dense_0"] == (63, 256)
  assert kernels["Dense_4"] == (256 + 63, 256)  # the layer after the skip sees [h, x]
  assert sum(k[0] * k[1] for k in kernels.values()) == (
      63 * 256 + 6 * 256 * 256 + 319 * 256 + 256 * 1 + 256 * 256 + (256 + 27) * 128 + 128 * 3)
  rgb, raw_density = mlp.apply({"params": params}, x, view)
  assert rgb.shape == (5, 7, 3) and raw_density.shape == (5, 7)
  assert np.all((np.asarray(rgb) > 0) & (np.asarray(rgb) < 1))


def test_view_direction_changes_colour_not_density(rng):
  mlp = model.MLP(depth=4, width=32, skip_layer=2, view_width=16)
  x = jnp.asarray(rng.normal(size=(3, 5, 63)), jnp.float32)
  v1, v2 = (jnp.asarray(rng.normal(size=(3, 27)), jnp.float32) for _ in range(2))
  params = mlp.init(jax.random.key(0), x, v1)
  rgb1, d1 = mlp.apply(params, x, v1)
  rgb2, d2 = mlp.apply(params, x, v2)
  np.testing.assert_array_equal(d1, d2)
  assert np.max(np.abs(rgb1 - rgb2)) > 1e-4


def test_view_features_follow_their_own_ray(rng):
  """Each ray's samples see that ray's view direction: evaluating rays one at a time changes nothing."""
  mlp = model.MLP(depth=3, width=16, skip_layer=2, view_width=8)
  x = jnp.asarray(rng.normal(size=(4, 6, 63)), jnp.float32)
  view = jnp.asarray(rng.normal(size=(4, 27)), jnp.float32)
  params = mlp.init(jax.random.key(0), x, view)
  rgb, _ = mlp.apply(params, x, view)
  for r in range(4):
    rgb_r, _ = mlp.apply(params, x[r:r + 1], view[r:r + 1])
    np.testing.assert_allclose(rgb[r], rgb_r[0], atol=1e-6)


def test_nerf_levels_shapes_determinism_and_gradients(rng):
  nerf = small_nerf(density_noise=1.0)
  rays = random_rays(rng, 8)
  variables = nerf.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  assert set(variables["params"]) == {"coarse", "fine"}
  coarse, fine = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(2), randomized=False)
  assert coarse.weights.shape == (8, 16) and fine.weights.shape == (8, 40)
  assert fine.rgb.shape == (8, 3)
  again = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(3), randomized=False)[1]
  np.testing.assert_array_equal(fine.rgb, again.rgb)  # evaluation ignores the key
  jittered = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(3), randomized=True)[1]
  assert np.max(np.abs(jittered.depth - fine.depth)) > 0

  def loss(params):
    levels = nerf.apply({"params": params}, rays, 2.0, 6.0, jax.random.key(4), randomized=True)
    return sum(jnp.mean((level.rgb - 0.5) ** 2) for level in levels)

  grads = jax.grad(loss)(variables["params"])
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads["fine"]))


def test_coarse_only_model(rng):
  nerf = model.NeRF(model.MLP(depth=2, width=16, skip_layer=4, view_width=8),
                    model.RenderSettings(num_coarse_samples=8, num_fine_samples=0, use_viewdirs=False))
  rays = random_rays(rng, 3)
  variables = nerf.init(jax.random.key(0), rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  assert set(variables["params"]) == {"coarse"}
  levels = nerf.apply(variables, rays, 2.0, 6.0, jax.random.key(1), randomized=False)
  assert len(levels) == 1 and levels[0].rgb.shape == (3, 3)
