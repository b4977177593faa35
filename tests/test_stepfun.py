"""Interval resampling, the outer measure and the proposal losses against brute-force references."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxnerf.core import compositing
from jaxnerf.nerf import losses
from jaxnerf.nerf import model
from jaxnerf.nerf import sampling
from jaxnerf.core import stepfun


def random_step(rng, n, lo=2.0, hi=6.0):
  edges = np.sort(np.concatenate([[lo, hi], rng.uniform(lo, hi, n - 1)]))
  weights = rng.exponential(size=n) * (rng.uniform(size=n) > 0.3)
  weights[rng.integers(n)] += 0.1
  return edges, weights


def test_invert_cdf_matches_float64_reference(rng):
  for _ in range(5):
    edges, weights = random_step(rng, 9)
    u = np.sort(rng.uniform(size=30))
    cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    expected = np.interp(u, cdf, edges)  # the CDF is piecewise linear: its inverse interpolates
    ours = stepfun.invert_cdf(*(jnp.asarray(a, jnp.float32) for a in (u, edges, weights)))
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_sample_intervals_follow_the_weights(rng):
  edges = jnp.array([2.0, 3.0, 4.0, 5.0, 6.0])
  weights = jnp.array([0.0, 1.0, 0.0, 3.0])  # a quarter of the mass in [3, 4], the rest in [5, 6]
  new = np.asarray(stepfun.sample_intervals(jax.random.key(0), edges, weights, 8, randomized=False))
  assert np.all(np.diff(new) >= 0) and new[0] >= 2.0 and new[-1] <= 6.0
  # Points at CDF levels 1/16, 3/16, ..., 15/16: two in [3, 4] (3.25, 3.75), six in [5, 6]; the endpoints are
  # their midpoints, with the outer ones mirrored.
  np.testing.assert_allclose(new, [3.0, 3.5, (3.75 + 5 + 1 / 12) / 2, 5 + 1 / 6, 5 + 2 / 6, 5.5, 5 + 4 / 6,
                                   5 + 5 / 6, 6.0], atol=1e-5)
  # Randomised: the same strata, jittered; sorted and inside the domain for many draws.
  many = np.asarray(stepfun.sample_intervals(jax.random.key(1), jnp.broadcast_to(edges, (500, 5)),
                                             jnp.broadcast_to(weights, (500, 4)), 8, randomized=True))
  assert np.all(np.diff(many, axis=-1) >= 0) and many.min() >= 2.0 and many.max() <= 6.0


def test_first_proposal_level_is_stratified():
  sampler = sampling.Intervals(8)
  samples = sampler(jax.random.key(0), (3,), 2.0, 6.0, None, randomized=False)
  np.testing.assert_allclose(samples.edges, np.broadcast_to(np.linspace(2, 6, 9), (3, 9)), atol=1e-5)
  np.testing.assert_allclose(samples.t, np.broadcast_to(np.linspace(2.25, 5.75, 8), (3, 8)), atol=1e-5)


def reference_outer(edges, proposal_edges, proposal_weights):
  out = np.zeros(len(edges) - 1)
  for i in range(len(edges) - 1):
    a, b = edges[i], edges[i + 1]
    for j in range(len(proposal_edges) - 1):
      if min(b, proposal_edges[j + 1]) - max(a, proposal_edges[j]) > 0:  # overlap of positive length
        out[i] += proposal_weights[j]
  return out


def test_outer_weights_match_brute_force(rng):
  for _ in range(10):
    edges, _ = random_step(rng, 11)
    proposal_edges, proposal_weights = random_step(rng, 7)
    ours = stepfun.outer_weights(*(jnp.asarray(a, jnp.float32) for a in (edges, proposal_edges, proposal_weights)))
    np.testing.assert_allclose(ours, reference_outer(edges, proposal_edges, proposal_weights), atol=1e-5)
  # Shared endpoints: an interval touching a proposal interval at one point does not count it.
  shared = np.array([2.0, 3.0, 4.0, 6.0])
  ours = stepfun.outer_weights(jnp.asarray(shared), jnp.asarray(shared), jnp.array([0.1, 0.2, 0.3]))
  np.testing.assert_allclose(ours, [0.1, 0.2, 0.3], atol=1e-7)


def levels_from(steps):
  """model.Level list from (edges, weights, with_rgb) triples."""
  levels = []
  for edges, weights, with_rgb in steps:
    edges, weights = jnp.asarray(edges, jnp.float32), jnp.asarray(weights, jnp.float32)
    out = compositing.Composite(rgb=jnp.zeros(3) if with_rgb else None, depth=None, disparity=None, acc=None,
                                weights=weights)
    levels.append(model.Level(sampling.Samples(0.5 * (edges[1:] + edges[:-1]), edges), out))
  return levels


def test_interlevel_loss_zero_when_proposal_agrees_positive_when_it_underestimates(rng):
  edges, weights = random_step(rng, 10)
  weights = weights / weights.sum() * 0.9
  # Zero up to the rounding of prefix sums.
  assert float(losses.interlevel_loss(levels_from([(edges, weights, False), (edges, weights, True)]))) < 1e-10
  # A coarser proposal that holds the same total mass over each of its intervals: still zero.
  coarse_edges = edges[::3] if len(edges[::3]) > 1 else edges[[0, -1]]
  coarse_edges = np.append(coarse_edges, edges[-1]) if coarse_edges[-1] != edges[-1] else coarse_edges
  coarse_weights = [weights[(edges[:-1] >= a) & (edges[:-1] < b)].sum() for a, b in zip(coarse_edges[:-1],
                                                                                        coarse_edges[1:])]
  loss = losses.interlevel_loss(levels_from([(coarse_edges, coarse_weights, False), (edges, weights, True)]))
  assert float(loss) < 1e-7
  low = weights.copy()
  low[np.argmax(weights)] *= 0.5
  loss = float(losses.interlevel_loss(levels_from([(edges, low, False), (edges, weights, True)])))
  w = weights[np.argmax(weights)]
  np.testing.assert_allclose(loss, (0.5 * w) ** 2 / w, rtol=1e-4)


def test_interlevel_loss_teaches_only_the_proposal(rng):
  edges, weights = random_step(rng, 6)
  proposal = jnp.asarray(weights * 0.5, jnp.float32)
  final = jnp.asarray(weights, jnp.float32)

  def loss(p, f):
    return losses.interlevel_loss(levels_from([(edges, p, False), (edges, f, True)]))

  grad_p, grad_f = jax.grad(loss, argnums=(0, 1))(proposal, final)
  assert np.all(np.asarray(grad_f) == 0) and np.any(np.asarray(grad_p) < 0)


def test_distortion_loss_matches_double_sum(rng):
  for _ in range(5):
    edges, weights = random_step(rng, 12)
    s = (edges - 2.0) / 4.0
    mids = 0.5 * (s[1:] + s[:-1])
    expected = sum(weights[i] * weights[j] * abs(mids[i] - mids[j]) for i in range(12) for j in range(12))
    expected += sum(weights ** 2 * np.diff(s)) / 3.0
    ours = losses.distortion_loss(levels_from([(edges, weights, True)]), 2.0, 6.0)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
  # Concentrating the same weight in one short interval lowers it.
  spread = losses.distortion_loss(levels_from([(np.linspace(2, 6, 5), np.full(4, 0.25), True)]), 2.0, 6.0)
  tight = losses.distortion_loss(levels_from([(np.linspace(2, 6, 5), np.array([0, 1.0, 0, 0]), True)]), 2.0, 6.0)
  assert float(tight) < float(spread)


def test_distortion_loss_of_point_samples_ends_the_last_interval_at_far():
  """The hierarchical sampler's point samples composite their last sample over the rest of the ray (an interval
  1e10 long); the distortion loss measures it only up to `far`, where the ray's [0, 1] range ends."""
  t = np.array([2.5, 3.0, 4.0, 5.0])
  weights = np.array([0.1, 0.2, 0.3, 0.3])
  edges = np.asarray(compositing.point_sample_edges(jnp.asarray(t, jnp.float32)))
  assert edges[-1] > 1e9
  ours = losses.distortion_loss(levels_from([(edges, weights, True)]), 2.0, 6.0)
  at_far = losses.distortion_loss(levels_from([(np.append(t, 6.0), weights, True)]), 2.0, 6.0)
  np.testing.assert_allclose(ours, at_far, rtol=1e-6)
  assert float(ours) < 1.0
