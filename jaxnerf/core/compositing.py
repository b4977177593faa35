"""Volume rendering: alpha compositing of per-sample colour and density over intervals along rays."""
from typing import NamedTuple, Optional

import jax.numpy as jnp

# Stands in for the infinite length of the last interval of point samples, as in the NeRF paper's code:
# whatever density the last sample has, it absorbs the rest of the ray.
FAR_INTERVAL = 1e10


class Composite(NamedTuple):
  rgb: Optional[jnp.ndarray]  # [..., 3]; None for density-only fields
  depth: jnp.ndarray  # [...] expected distance, in units of t
  disparity: jnp.ndarray  # [...] 1 / (depth / acc)
  acc: jnp.ndarray  # [...] accumulated opacity
  weights: jnp.ndarray  # [..., num_samples]


def point_sample_edges(t):
  """Interval endpoints for point samples as the NeRF paper composites them: sample i stands for [t_i, t_i+1],
  and the last one for the rest of the ray.

  Args:
    t: [..., num_samples] sorted distances.

  Returns:
    [..., num_samples + 1] endpoints.
  """
  return jnp.concatenate([t, t[..., -1:] + FAR_INTERVAL], axis=-1)


def interval_lengths(edges, directions):
  """[..., num_samples] lengths of the intervals between edges [..., num_samples + 1] along rays of directions
  [..., 3] (distances are scaled by the directions' lengths)."""
  return (edges[..., 1:] - edges[..., :-1]) * jnp.linalg.norm(directions[..., None, :], axis=-1)


def compositing_weights(density, edges, directions):
  """Weights w_i = T_i (1 - exp(-sigma_i delta_i)), with T_i = exp(-sum_{j<i} sigma_j delta_j).

  Args:
    density: [..., num_samples] non-negative volume density, constant over each interval.
    edges: [..., num_samples + 1] sorted interval endpoints along the rays; delta_i = edges_i+1 - edges_i.
    directions: [..., 3] ray directions; distances along the rays are scaled by their length.

  Returns:
    [..., num_samples] weights; their sum (the opacity) is at most 1.
  """
  optical_depth = density * interval_lengths(edges, directions)
  alpha = 1.0 - jnp.exp(-optical_depth)
  # Exclusive cumulative sum: the transmittance reaching sample i excludes sample i itself.
  accumulated = jnp.concatenate(
      [jnp.zeros_like(optical_depth[..., :1]), jnp.cumsum(optical_depth[..., :-1], axis=-1)], axis=-1)
  return alpha * jnp.exp(-accumulated)


def composite(rgb, density, t, edges, directions, background=None):
  """Alpha-composite samples into per-ray colour, depth, disparity and opacity.

  Args:
    rgb: [..., num_samples, 3] sample colours in [0, 1], or None (weights and depth only).
    density: [..., num_samples] sample densities.
    t: [..., num_samples] distances the samples stand for (their depth).
    edges: [..., num_samples + 1] interval endpoints.
    directions: [..., 3] ray directions.
    background: None or [3] / [..., 3] colour shown where the ray is not fully absorbed.

  Returns:
    Composite with rgb [..., 3], depth, disparity and acc [...], weights [..., num_samples].
  """
  weights = compositing_weights(density, edges, directions)
  acc = jnp.sum(weights, axis=-1)
  depth = jnp.sum(weights * t, axis=-1)
  eps = jnp.finfo(t.dtype).tiny
  disparity = acc / jnp.maximum(depth, eps)
  color = None
  if rgb is not None:
    color = jnp.sum(weights[..., None] * rgb, axis=-2)
    if background is not None:
      color = color + (1.0 - acc[..., None]) * jnp.asarray(background, color.dtype)
  return Composite(rgb=color, depth=depth, disparity=disparity, acc=acc, weights=weights)
