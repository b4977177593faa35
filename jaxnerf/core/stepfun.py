"""Step functions over intervals along rays: a ray's samples are intervals [edges_i, edges_i+1] carrying weights.

Used by proposal sampling (resample intervals where a coarser level put its weight) and its losses (how much of a
proposal's weight covers each final interval).
"""
import jax
import jax.numpy as jnp


def invert_cdf(u, edges, weights):
  """The inverse CDF of the piecewise-constant density given by interval weights.

  Args:
    u: [..., k] levels in [0, 1].
    edges: [..., n + 1] sorted interval endpoints.
    weights: [..., n] non-negative weights with a positive sum.

  Returns:
    [..., k] distances t with CDF(t) = u, inside [edges_0, edges_n].
  """
  cdf = jnp.cumsum(weights, axis=-1) / jnp.sum(weights, axis=-1, keepdims=True)
  cdf = jnp.concatenate([jnp.zeros_like(cdf[..., :1]), jnp.minimum(cdf[..., :-1], 1.0),
                         jnp.ones_like(cdf[..., :1])], axis=-1)  # [..., n + 1]
  # Interval index of each level by counting the CDF values below it: n is small and this vectorises everywhere.
  index = jnp.sum(u[..., :, None] >= cdf[..., None, 1:-1], axis=-1)  # [..., k] in 0 .. n - 1
  take = lambda a, i: jnp.take_along_axis(a, i, axis=-1)
  cdf_lo, cdf_hi = take(cdf, index), take(cdf, index + 1)
  t_lo, t_hi = take(edges, index), take(edges, index + 1)
  span = cdf_hi - cdf_lo
  frac = jnp.where(span > 0, (u - cdf_lo) / jnp.where(span > 0, span, 1.0), 0.0)
  return jnp.clip(t_lo + jnp.clip(frac, 0.0, 1.0) * (t_hi - t_lo), edges[..., :1], edges[..., -1:])


def sample_intervals(key, edges, weights, num_samples, randomized):
  """New intervals placed where `weights` lie: `num_samples` points drawn by the inverse CDF (one per stratum of
  [0, 1], jittered when randomized, else at the strata's centres) become the centres of the new intervals, whose
  endpoints are the midpoints between neighbours; the outer endpoints mirror the first and last midpoints and stay
  inside the old domain. No gradient flows through the new endpoints.

  Args:
    key: PRNG key, used only when randomized.
    edges: [..., n + 1] sorted endpoints.
    weights: [..., n] non-negative weights with a positive sum.
    num_samples: new intervals per ray, at least 2.

  Returns:
    [..., num_samples + 1] sorted endpoints inside [edges_0, edges_n].
  """
  batch_shape = edges.shape[:-1]
  offset = jax.random.uniform(key, (*batch_shape, num_samples)) if randomized else 0.5
  u = (jnp.arange(num_samples, dtype=edges.dtype) + offset) / num_samples
  centres = invert_cdf(u, jax.lax.stop_gradient(edges), jax.lax.stop_gradient(weights))
  mids = 0.5 * (centres[..., 1:] + centres[..., :-1])
  first = jnp.maximum(2 * centres[..., :1] - mids[..., :1], edges[..., :1])
  last = jnp.minimum(2 * centres[..., -1:] - mids[..., -1:], edges[..., -1:])
  return jax.lax.stop_gradient(jnp.concatenate([first, mids, last], axis=-1))


def outer_weights(edges, proposal_edges, proposal_weights):
  """For each interval, the summed weight of the proposal intervals that overlap it (an upper bound on the weight
  a consistent proposal assigns to it: mip-NeRF 360's outer measure).

  Args:
    edges: [..., n + 1] sorted endpoints of the intervals to bound.
    proposal_edges: [..., m + 1] sorted endpoints of the proposal's intervals.
    proposal_weights: [..., m] their weights.

  Returns:
    [..., n].
  """
  cumulative = jnp.concatenate([jnp.zeros_like(proposal_weights[..., :1]), jnp.cumsum(proposal_weights, axis=-1)],
                               axis=-1)  # [..., m + 1]
  # Proposal interval j overlaps [a, b] when p_j < b and p_j+1 > a: j runs from the count of p_j+1 <= a up to
  # (excluding) the count of p_j < b.
  first = jnp.sum(proposal_edges[..., None, 1:] <= edges[..., :-1, None], axis=-1)  # [..., n]
  end = jnp.sum(proposal_edges[..., None, :-1] < edges[..., 1:, None], axis=-1)  # [..., n]
  end = jnp.maximum(end, first)
  take = lambda i: jnp.take_along_axis(cumulative, i, axis=-1)
  return take(end) - take(first)
