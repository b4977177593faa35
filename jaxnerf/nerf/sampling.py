"""Where to evaluate the field along each ray.

A sampler gives each level its Samples: distances t where the field is evaluated and the interval endpoints they
stand for. The NeRF paper's samplers place points (stratified, then hierarchical inverse-CDF resampling of the
coarse weights), each standing for the interval up to the next point; proposal sampling (mip-NeRF 360) places
intervals, resampled from the previous level's interval weights, with the field evaluated at their midpoints;
mip-NeRF resamples intervals from blurred weights.

The first level's samples are spaced evenly in s = g(t) (`spacing`): linear in t, in disparity 1/t, or, as in
mip-NeRF 360 and Zip-NeRF for unbounded scenes, linear up to distance 1 and in disparity beyond, so that the far
range (up to a large `far`) takes few samples. Interval samplers with a spacing other than linear resample in the
normalised s in [0, 1], as mip-NeRF 360 does, and record the s of their edges for the distortion loss.
"""
import dataclasses
from typing import NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from jaxnerf.core import compositing
from jaxnerf.core import stepfun


class Samples(NamedTuple):
  t: jnp.ndarray  # [..., num_samples] distances where the field is evaluated
  edges: jnp.ndarray  # [..., num_samples + 1] endpoints of the intervals the samples stand for
  # [..., num_samples + 1] the endpoints in normalised spacing coordinates (t_to_s), or None for linear spacing
  s_edges: Optional[jnp.ndarray] = None


SPACINGS = ("linear", "disparity", "linear_then_disparity")


def spacing_function(t, spacing):
  """g(t) of a spacing: t, 1/t, or t up to 1 and 2 - 1/t beyond (continuous, with slope 1 at t = 1). [...] -> [...]."""
  if spacing == "linear":
    return t
  if spacing == "disparity":
    return 1.0 / t
  if spacing == "linear_then_disparity":
    return jnp.where(t < 1.0, t, 2.0 - 1.0 / jnp.maximum(t, 1.0))
  raise ValueError(f"unknown spacing {spacing!r}, expected one of {SPACINGS}")


def inverse_spacing_function(u, spacing):
  """The inverse of spacing_function: g(t) [...] -> t [...]."""
  if spacing == "linear":
    return u
  if spacing == "disparity":
    return 1.0 / u
  if spacing == "linear_then_disparity":
    return jnp.where(u < 1.0, u, 1.0 / (2.0 - jnp.maximum(u, 1.0)))
  raise ValueError(f"unknown spacing {spacing!r}, expected one of {SPACINGS}")


def t_to_s(t, near, far, spacing):
  """Distances t [...] in [near, far] -> s [...] in [0, 1], evenly spaced in g(t): (g(t) - g(near)) / (g(far) -
  g(near)). near, far: scalars or arrays that broadcast against t."""
  g_near, g_far = spacing_function(near, spacing), spacing_function(far, spacing)
  return (spacing_function(t, spacing) - g_near) / (g_far - g_near)


def s_to_t(s, near, far, spacing):
  """The inverse of t_to_s: s [...] in [0, 1] -> t [...] in [near, far] (exactly near and far at s = 0 and 1 for
  linear spacing, else to within rounding)."""
  g = spacing_function(near, spacing) * (1.0 - s) + spacing_function(far, spacing) * s
  return inverse_spacing_function(g, spacing)


def stratified_samples(key, batch_shape, num_samples, near, far, lindisp, randomized, spacing="linear"):
  """Sample distances along rays, one per stratum of [near, far].

  The strata are uniform in depth, or in disparity (1/depth) when `lindisp`, or else in s = g(t) of `spacing`
  (the "disparity" spacing is `lindisp`). Without randomisation the samples are evenly spaced in s (deterministic,
  for evaluation); with it each sample is jittered uniformly (in t) inside its stratum.

  Args:
    key: PRNG key, used only when `randomized`.
    batch_shape: shape of the ray batch, e.g. (num_rays,).
    num_samples: samples per ray.
    near, far: scalars or arrays broadcastable to [*batch_shape, 1].
    lindisp: space the samples linearly in disparity instead of depth.
    randomized: jitter samples within their strata (training).
    spacing: one of SPACINGS, used when not `lindisp`.

  Returns:
    t: [*batch_shape, num_samples] sorted distances inside [near, far].
  """
  s = jnp.linspace(0.0, 1.0, num_samples)
  if lindisp:
    t = 1.0 / (1.0 / near * (1.0 - s) + 1.0 / far * s)
  elif spacing == "linear":
    t = near * (1.0 - s) + far * s
  else:
    t = jnp.clip(s_to_t(s, near, far, spacing), near, far)
  t = jnp.broadcast_to(t, (*batch_shape, num_samples))
  if randomized:
    mids = 0.5 * (t[..., 1:] + t[..., :-1])
    upper = jnp.concatenate([mids, t[..., -1:]], axis=-1)
    lower = jnp.concatenate([t[..., :1], mids], axis=-1)
    u = jax.random.uniform(key, t.shape)
    t = lower + (upper - lower) * u
  return t


def sample_pdf(key, bins, weights, num_samples, randomized, eps=1e-5):
  """Draw samples from the piecewise-constant pdf given by `weights` over `bins` (inverse transform sampling).

  Args:
    key: PRNG key, used only when `randomized`.
    bins: [..., num_bins + 1] sorted bin edges.
    weights: [..., num_bins] non-negative bin weights (need not be normalised).
    num_samples: samples per ray.
    randomized: uniform random CDF levels if True, else evenly spaced levels in [0, 1].
    eps: added to every weight so that empty rays still get (uniform) samples.

  Returns:
    [..., num_samples] sorted samples inside [bins[..., 0], bins[..., -1]].
  """
  batch_shape = bins.shape[:-1]
  if randomized:
    u = jnp.sort(jax.random.uniform(key, (*batch_shape, num_samples)), axis=-1)
  else:
    u = jnp.broadcast_to(jnp.linspace(0.0, 1.0, num_samples), (*batch_shape, num_samples))
  return stepfun.invert_cdf(u, bins, weights + eps)


def hierarchical_samples(key, t_coarse, weights, num_samples, randomized):
  """Fine samples drawn where the coarse pass put its weight, merged with the coarse samples.

  The coarse samples' midpoints are the bin edges; the first and last coarse weights (half-open bins) are
  dropped, as in the NeRF paper's code. No gradient flows through the new sample positions.

  Args:
    t_coarse: [..., num_coarse] sorted coarse sample distances.
    weights: [..., num_coarse] compositing weights of the coarse pass.
    num_samples: number of extra samples per ray.

  Returns:
    [..., num_coarse + num_samples] sorted distances.
  """
  mids = 0.5 * (t_coarse[..., 1:] + t_coarse[..., :-1])
  t_fine = sample_pdf(key, mids, weights[..., 1:-1], num_samples, randomized)
  t_fine = jax.lax.stop_gradient(t_fine)
  return jnp.sort(jnp.concatenate([t_coarse, t_fine], axis=-1), axis=-1)


# What a level hands to the next one's sampler: its Samples and their compositing weights [..., num_samples].
Previous = Optional[Tuple[Samples, jnp.ndarray]]


@dataclasses.dataclass(frozen=True)
class Stratified:
  """The NeRF paper's coarse samples: one point per stratum of [near, far] (of disparity when `lindisp`, else of
  s = g(t) of `spacing`)."""
  num_samples: int
  lindisp: bool = False
  spacing: str = "linear"

  def __call__(self, key, batch_shape, near, far, previous: Previous, randomized):
    del previous
    t = stratified_samples(key, batch_shape, self.num_samples, near, far, self.lindisp, randomized, self.spacing)
    return Samples(t, compositing.point_sample_edges(t))


@dataclasses.dataclass(frozen=True)
class Hierarchical:
  """The NeRF paper's fine samples: `num_samples` more points drawn from the previous level's weights, merged
  with its points."""
  num_samples: int

  def __call__(self, key, batch_shape, near, far, previous: Previous, randomized):
    del batch_shape, near, far
    samples, weights = previous
    t = hierarchical_samples(key, samples.t, weights, self.num_samples, randomized)
    return Samples(t, compositing.point_sample_edges(t))


def _resample_in_s(key, batch_shape, near, far, previous: Previous, weights, num_samples, randomized, spacing):
  """Intervals resampled in the normalised spacing coordinate s from `weights` [..., n] over the previous level's
  intervals (from the single interval s in [0, 1] when there is no previous level): Samples at the midpoints (in
  t) of the new intervals, with their s edges."""
  if previous is None:
    s_edges = jnp.broadcast_to(jnp.asarray([0.0, 1.0], jnp.float32), (*batch_shape, 2))
  else:
    samples = previous[0]
    s_edges = samples.s_edges if samples.s_edges is not None else t_to_s(samples.edges, near, far, spacing)
  s_edges = stepfun.sample_intervals(key, s_edges, weights, num_samples, randomized)
  edges = jnp.clip(s_to_t(s_edges, near, far, spacing), near, far)
  return Samples(0.5 * (edges[..., 1:] + edges[..., :-1]), edges, s_edges)


@dataclasses.dataclass(frozen=True)
class Intervals:
  """Proposal sampling: `num_samples` intervals resampled from the previous level's interval weights (the first
  level resamples the single interval [near, far], which gives stratified intervals, evenly spaced in s = g(t) of
  `spacing`); the field is evaluated at their midpoints."""
  num_samples: int
  spacing: str = "linear"

  def __call__(self, key, batch_shape, near, far, previous: Previous, randomized):
    if self.spacing != "linear":
      weights = jnp.ones((*batch_shape, 1), jnp.float32) if previous is None else _padded(previous[1])
      return _resample_in_s(key, batch_shape, near, far, previous, weights, self.num_samples, randomized,
                            self.spacing)
    if previous is None:
      edges = jnp.concatenate([jnp.broadcast_to(jnp.asarray(b, jnp.float32), (*batch_shape, 1)) for b in (near, far)],
                              axis=-1)
      weights = jnp.ones((*batch_shape, 1), jnp.float32)
    else:
      samples, weights = previous
      edges = samples.edges
      weights = _padded(weights)
    edges = stepfun.sample_intervals(key, edges, weights, self.num_samples, randomized)
    return Samples(0.5 * (edges[..., 1:] + edges[..., :-1]), edges)


def _padded(weights):
  """[..., n] -> [..., n]: a little weight everywhere keeps every part of the ray reachable while the proposals
  learn."""
  return weights + 1e-3 * jnp.sum(weights, axis=-1, keepdims=True) / weights.shape[-1] + 1e-8


def blur_weights(weights):
  """mip-NeRF's filter of interval weights before resampling: a 2-tap max then a 2-tap mean, which spreads each
  peak half an interval to either side and fills one-interval gaps.

  Args:
    weights: [..., n].

  Returns:
    [..., n].
  """
  padded = jnp.concatenate([weights[..., :1], weights, weights[..., -1:]], axis=-1)
  maxed = jnp.maximum(padded[..., :-1], padded[..., 1:])  # [..., n + 1]
  return 0.5 * (maxed[..., :-1] + maxed[..., 1:])


@dataclasses.dataclass(frozen=True)
class BlurredIntervals:
  """mip-NeRF's fine sampler: `num_samples` intervals resampled from the previous level's weights after
  blur_weights and `padding` added to every weight (so that some samples land everywhere along the ray); in s = g(t)
  for a `spacing` other than linear."""
  num_samples: int
  padding: float = 0.01
  spacing: str = "linear"

  def __call__(self, key, batch_shape, near, far, previous: Previous, randomized):
    if self.spacing != "linear":
      return _resample_in_s(key, batch_shape, near, far, previous, blur_weights(previous[1]) + self.padding,
                            self.num_samples, randomized, self.spacing)
    del batch_shape, near, far
    samples, weights = previous
    edges = stepfun.sample_intervals(key, samples.edges, blur_weights(weights) + self.padding, self.num_samples,
                                     randomized)
    return Samples(0.5 * (edges[..., 1:] + edges[..., :-1]), edges)
