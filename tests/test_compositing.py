import jax
import jax.numpy as jnp
import numpy as np

from jaxnerf.core import compositing


def reference_composite(rgb, density, t, direction):
  """Per-sample loop in float64, with the last interval infinite."""
  norm = np.linalg.norm(direction)
  transmittance, color, depth, acc = 1.0, np.zeros(3), 0.0, 0.0
  weights = []
  for i in range(len(t)):
    delta = (t[i + 1] - t[i]) * norm if i + 1 < len(t) else np.inf
    alpha = 1.0 - np.exp(-density[i] * delta) if density[i] > 0 else 0.0
    w = transmittance * alpha
    weights.append(w)
    color += w * rgb[i]
    depth += w * t[i]
    acc += w
    transmittance *= 1.0 - alpha
  return color, depth, acc, np.array(weights)


def test_matches_float64_reference(rng):
  for _ in range(5):
    t = np.sort(rng.uniform(2, 6, size=24))
    density = rng.exponential(0.7, size=24) * (rng.uniform(size=24) > 0.3)
    rgb = rng.uniform(size=(24, 3))
    direction = rng.normal(size=3) * 1.7
    t32 = jnp.asarray(t, jnp.float32)
    out = compositing.composite(jnp.asarray(rgb, jnp.float32), jnp.asarray(density, jnp.float32), t32,
                                compositing.point_sample_edges(t32), jnp.asarray(direction, jnp.float32))
    color, depth, acc, weights = reference_composite(rgb, density, t, direction)
    np.testing.assert_allclose(out.weights, weights, atol=2e-6)
    np.testing.assert_allclose(out.rgb, color, atol=5e-6)
    np.testing.assert_allclose(out.depth, depth, rtol=1e-5)
    np.testing.assert_allclose(out.acc, acc, atol=2e-6)
    np.testing.assert_allclose(out.disparity, acc / depth, rtol=1e-5)


def test_opaque_slab_gives_its_depth_and_colour():
  t = jnp.linspace(2.0, 6.0, 41)
  density = jnp.where(t >= 3.5, 1e4, 0.0)
  rgb = jnp.broadcast_to(jnp.array([0.2, 0.6, 0.9]), (41, 3))
  out = compositing.composite(rgb, density, t, compositing.point_sample_edges(t), jnp.array([0.0, 0.0, -1.0]),
                              background=jnp.ones(3))
  np.testing.assert_allclose(out.depth, 3.5, rtol=1e-5)
  np.testing.assert_allclose(out.rgb, [0.2, 0.6, 0.9], atol=1e-6)
  np.testing.assert_allclose(out.acc, 1.0, atol=1e-6)


def test_constant_density_transmittance_uses_interval_lengths_in_world_units():
  """With constant density sigma, the light stopped before t_k is 1 - exp(-sigma |d| (t_k - t_0)), however the
  samples are spaced and however long the direction vector is."""
  t = jnp.array([2.0, 2.1, 2.5, 2.6, 3.4, 4.0, 5.5, 6.0])
  sigma, direction = 0.8, jnp.array([0.3, -1.2, 0.4])
  norm = float(jnp.linalg.norm(direction))
  weights = compositing.compositing_weights(jnp.full(8, sigma), compositing.point_sample_edges(t), direction)
  absorbed_before = np.cumsum(np.asarray(weights))[:-1]
  np.testing.assert_allclose(absorbed_before, 1 - np.exp(-sigma * norm * (np.asarray(t[1:]) - 2.0)), rtol=1e-5)
  # The last interval is infinite: everything left is absorbed.
  np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-6)


def test_empty_space_shows_background():
  t = jnp.linspace(2.0, 6.0, 8)
  out = compositing.composite(jnp.full((8, 3), 0.3), jnp.zeros(8), t, compositing.point_sample_edges(t),
                              jnp.array([0.0, 0.0, -1.0]), background=jnp.array([1.0, 0.5, 0.0]))
  np.testing.assert_allclose(out.rgb, [1.0, 0.5, 0.0])
  assert float(out.acc) == 0.0 and float(out.disparity) == 0.0


def test_weights_properties_and_finite_gradients(rng):
  t = jnp.asarray(np.sort(rng.uniform(2, 6, size=(16, 32)), axis=-1), jnp.float32)
  density = jnp.asarray(rng.exponential(2.0, size=(16, 32)), jnp.float32)
  rgb = jnp.asarray(rng.uniform(size=(16, 32, 3)), jnp.float32)
  directions = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
  edges = compositing.point_sample_edges(t)
  out = compositing.composite(rgb, density, t, edges, directions, background=jnp.ones(3))
  assert np.all(np.asarray(out.weights) >= 0)
  assert np.all(np.asarray(out.acc) <= 1 + 1e-6)
  assert np.all((np.asarray(out.rgb) >= 0) & (np.asarray(out.rgb) <= 1 + 1e-6))
  grads = jax.grad(lambda d, c: jnp.sum(compositing.composite(c, d, t, edges, directions, jnp.ones(3)).rgb),
                   argnums=(0, 1))(density, rgb)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_intervals_match_float64_reference(rng):
  """Finite intervals (proposal-style samples): the density of interval i acts over [edges_i, edges_i+1], the
  sample stands at its midpoint, and light that passes the last interval shows the background."""
  edges = np.sort(rng.uniform(2, 6, size=17))
  density = rng.exponential(1.0, size=16)
  rgb = rng.uniform(size=(16, 3))
  mids = 0.5 * (edges[1:] + edges[:-1])
  transmittance, color, depth = 1.0, np.zeros(3), 0.0
  for i in range(16):
    alpha = 1.0 - np.exp(-density[i] * (edges[i + 1] - edges[i]))
    color += transmittance * alpha * rgb[i]
    depth += transmittance * alpha * mids[i]
    transmittance *= 1.0 - alpha
  color += transmittance * np.array([0.0, 1.0, 0.5])
  out = compositing.composite(*(jnp.asarray(a, jnp.float32) for a in (rgb, density, mids, edges)),
                              jnp.array([0.0, 0.0, 1.0]), background=jnp.array([0.0, 1.0, 0.5]))
  np.testing.assert_allclose(out.rgb, color, atol=5e-6)
  np.testing.assert_allclose(out.depth, depth, rtol=1e-5)
  np.testing.assert_allclose(out.acc, 1.0 - transmittance, atol=2e-6)
  assert compositing.composite(None, *(jnp.asarray(a, jnp.float32) for a in (density, mids, edges)),
                               jnp.array([0.0, 0.0, 1.0])).rgb is None
