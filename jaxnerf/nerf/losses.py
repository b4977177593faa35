"""Training losses as small named functions of the rendered levels; config.loss weighs them."""
import jax
import jax.numpy as jnp

from jaxnerf.core import stepfun


def rgb_loss(levels, target, coarse_weight):
  """Mean squared colour error of the finest level plus `coarse_weight` times that of each earlier level that
  renders colour (the NeRF paper's coarse loss).

  Args:
    levels: model.Level list; target: [num_rays, 3].

  Returns:
    (loss, [mse of each level with colour]).
  """
  errors = [jnp.mean((level.out.rgb - target) ** 2) for level in levels if level.out.rgb is not None]
  return errors[-1] + coarse_weight * sum(errors[:-1]), errors


def interlevel_loss(levels):
  """mip-NeRF 360's proposal loss: each density-only (proposal) level's weights, summed over the proposal intervals
  overlapping a final interval, should cover that interval's weight. Only the proposals learn from it (the final
  weights are held fixed), so it is zero when a proposal agrees with the final level, and positive where it
  puts less weight than the final level.

  Returns:
    Scalar, summed over proposal levels, mean over rays.
  """
  final = levels[-1]
  edges, weights = jax.lax.stop_gradient(final.samples.edges), jax.lax.stop_gradient(final.out.weights)
  loss = 0.0
  for level in levels[:-1]:
    if level.out.rgb is not None:
      continue
    bound = stepfun.outer_weights(edges, level.samples.edges, level.out.weights)
    excess = jnp.maximum(0.0, weights - bound)
    loss = loss + jnp.mean(jnp.sum(excess ** 2 / (weights + jnp.finfo(jnp.float32).eps), axis=-1))
  return loss


def distortion_loss(levels, near, far):
  """mip-NeRF 360's distortion loss on the finest level, in distances normalised to [0, 1] over [near, far] (in the
  sampler's spacing coordinate s when it records one, samples.s_edges; else clipped to [near, far]):
  sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_i+1 - s_i), with m the interval midpoints. It pulls each ray's
  weight together into as short a stretch as possible (against floaters), computed in O(n) with prefix sums.

  Returns:
    Scalar, mean over rays.
  """
  level = levels[-1]
  s = level.samples.s_edges
  if s is None:  # clipped: point samples' last interval runs past `far` (compositing.point_sample_edges)
    s = jnp.clip((level.samples.edges - near) / (far - near), 0.0, 1.0)
  w = level.out.weights
  mids = 0.5 * (s[..., 1:] + s[..., :-1])
  # sum_ij w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_<i - (w m)_<i), the midpoints being sorted.
  exclusive = lambda a: jnp.cumsum(a, axis=-1) - a
  inter = 2.0 * jnp.sum(w * (mids * exclusive(w) - exclusive(w * mids)), axis=-1)
  intra = jnp.sum(w ** 2 * (s[..., 1:] - s[..., :-1]), axis=-1) / 3.0
  return jnp.mean(inter + intra)


def total_loss(levels, target, loss_config, near, far):
  """The weighted sum of the losses config.loss turns on.

  Returns:
    (loss, dict of named terms, with "mse" the finest level's colour error and "mse_coarse" the first level's).
  """
  rgb, errors = rgb_loss(levels, target, loss_config.coarse_rgb_weight)
  terms = {"rgb": rgb, "mse": errors[-1], "mse_coarse": errors[0]}
  loss = rgb
  if loss_config.interlevel_weight > 0:
    terms["interlevel"] = interlevel_loss(levels)
    loss = loss + loss_config.interlevel_weight * terms["interlevel"]
  if loss_config.distortion_weight > 0:
    terms["distortion"] = distortion_loss(levels, near, far)
    loss = loss + loss_config.distortion_weight * terms["distortion"]
  return loss, terms
