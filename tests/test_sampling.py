import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf.nerf import sampling


def reference_sample_pdf(bins, weights, u, eps=1e-5):
  """Float64 inverse CDF of a piecewise-constant density, one ray at a time, with a binary search."""
  weights = np.asarray(weights, np.float64) + eps
  cdf = np.concatenate([[0.0], np.cumsum(weights / weights.sum())])
  cdf[-1] = 1.0
  out = []
  for level in u:
    i = np.clip(np.searchsorted(cdf, level, side="right") - 1, 0, len(weights) - 1)
    frac = (level - cdf[i]) / (cdf[i + 1] - cdf[i])
    out.append(bins[i] + frac * (bins[i + 1] - bins[i]))
  return np.array(out)


@pytest.mark.parametrize("lindisp", [False, True])
def test_stratified_deterministic_is_even(lindisp):
  t = np.asarray(sampling.stratified_samples(None, (3,), 9, 2.0, 6.0, lindisp, randomized=False))
  assert t.shape == (3, 9)
  spaced = 1.0 / t if lindisp else t
  steps = np.diff(spaced, axis=-1)
  np.testing.assert_allclose(steps, np.broadcast_to(steps[:, :1], steps.shape), rtol=1e-4)
  np.testing.assert_allclose(t[:, [0, -1]], [[2.0, 6.0]] * 3, rtol=1e-6)


@pytest.mark.parametrize("lindisp", [False, True])
def test_stratified_random_stays_in_strata(lindisp):
  key = jax.random.key(3)
  t = np.asarray(sampling.stratified_samples(key, (500,), 16, 2.0, 6.0, lindisp, randomized=True))
  even = np.asarray(sampling.stratified_samples(None, (1,), 16, 2.0, 6.0, lindisp, randomized=False))[0]
  mids = 0.5 * (even[1:] + even[:-1])
  lower = np.concatenate([[2.0], mids])
  upper = np.concatenate([mids, [6.0]])
  assert np.all(t >= lower - 1e-6) and np.all(t <= upper + 1e-6)
  assert np.all(np.diff(t, axis=-1) >= 0)
  # Jitter covers each stratum: the spread across rays fills most of it.
  assert np.all(t.max(0) - t.min(0) > 0.9 * (upper - lower))


def test_sample_pdf_closed_form():
  # Weights 1 and 3 on bins [0, 1] and [1, 2]: the CDF is 0.25 at t = 1.
  bins = jnp.array([[0.0, 1.0, 2.0]])
  weights = jnp.array([[1.0, 3.0]])
  out = np.asarray(sampling.sample_pdf(None, bins, weights, 5, randomized=False, eps=0.0))[0]
  # Deterministic levels are 0, 0.25, 0.5, 0.75, 1.
  expected = [0.0, 1.0, 1.0 + 0.25 / 0.75, 1.0 + 0.5 / 0.75, 2.0]
  np.testing.assert_allclose(out, expected, atol=1e-6)


def test_sample_pdf_matches_float64_reference(rng):
  bins = np.sort(rng.uniform(2, 6, size=(4, 12)), axis=-1)
  weights = rng.uniform(0, 1, size=(4, 11)) * (rng.uniform(size=(4, 11)) > 0.4)
  out = np.asarray(sampling.sample_pdf(None, jnp.asarray(bins, jnp.float32), jnp.asarray(weights, jnp.float32),
                                       33, randomized=False))
  for r in range(4):
    np.testing.assert_allclose(out[r], reference_sample_pdf(bins[r], weights[r], np.linspace(0, 1, 33)),
                               atol=2e-5)


def test_sample_pdf_random_follows_the_pdf():
  bins = jnp.array([0.0, 1.0, 2.0, 3.0, 4.0])
  weights = jnp.array([0.1, 0.0, 0.6, 0.3])
  samples = np.asarray(sampling.sample_pdf(jax.random.key(0), bins, weights, 20000, randomized=True, eps=0.0))
  assert np.all(np.diff(samples) >= 0)
  counts = np.histogram(samples, bins=np.asarray(bins))[0] / samples.size
  np.testing.assert_allclose(counts, [0.1, 0.0, 0.6, 0.3], atol=0.015)
  # Uniform inside a bin.
  inside = samples[(samples >= 2) & (samples < 3)] - 2
  assert abs(inside.mean() - 0.5) < 0.02


def test_empty_ray_gets_uniform_samples():
  bins = jnp.linspace(2.0, 6.0, 9)
  out = np.asarray(sampling.sample_pdf(None, bins, jnp.zeros(8), 9, randomized=False))
  np.testing.assert_allclose(out, np.linspace(2.0, 6.0, 9), atol=1e-4)


def test_hierarchical_samples_merge_sort_and_stop_gradient(rng):
  t = jnp.asarray(np.sort(rng.uniform(2, 6, size=(5, 16)), axis=-1), jnp.float32)
  weights = jnp.asarray(rng.uniform(size=(5, 16)), jnp.float32)
  merged = sampling.hierarchical_samples(jax.random.key(1), t, weights, 32, randomized=True)
  assert merged.shape == (5, 48)
  assert np.all(np.diff(np.asarray(merged), axis=-1) >= 0)
  for r in range(5):  # every coarse sample is still there
    assert np.all(np.isin(np.asarray(t[r]), np.asarray(merged[r])))
  assert np.all((merged >= t[:, :1]) & (merged <= t[:, -1:]))
  grad = jax.grad(lambda w: jnp.sum(sampling.hierarchical_samples(None, t, w, 32, False)))(weights)
  np.testing.assert_array_equal(grad, 0.0)


def test_fine_samples_land_around_the_weighted_coarse_sample():
  """All coarse weight on sample k: the new samples fill the interval between the midpoints around t_k."""
  t = jnp.linspace(2.0, 6.0, 17)[None]
  k = 6
  weights = jnp.zeros((1, 17)).at[0, k].set(1.0)
  merged = np.asarray(sampling.hierarchical_samples(None, t, weights, 64, randomized=False))[0]
  new = np.setdiff1d(merged, np.asarray(t[0]))
  lo, hi = 0.5 * (t[0, k - 1] + t[0, k]), 0.5 * (t[0, k] + t[0, k + 1])
  inside = (new >= lo - 1e-5) & (new <= hi + 1e-5)
  assert inside.mean() > 0.95
