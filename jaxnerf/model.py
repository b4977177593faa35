"""The NeRF model: coarse and fine MLPs mapping encoded (position, view direction) to (rgb, density), and the
full per-ray rendering pass that ties sampling, encoding, the MLPs and compositing together."""
import dataclasses
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnerf import compositing
from jaxnerf import encoding
from jaxnerf import sampling


class MLP(nn.Module):
  """The NeRF paper's field network.

  `depth` ReLU layers of `width` units on the encoded position, with the encoded position concatenated back in
  after layer `skip_layer`; a density head on the trunk; a colour branch that takes a linear bottleneck of the
  trunk together with the encoded view direction through one ReLU layer of `view_width` units.
  """
  depth: int = 8
  width: int = 256
  skip_layer: int = 4
  view_width: int = 128

  @nn.compact
  def __call__(self, x, view):
    """Evaluate the field.

    Args:
      x: [..., num_samples, dx] encoded positions.
      view: [..., dv] encoded view directions (one per ray), or None for a view-independent colour.

    Returns:
      rgb: [..., num_samples, 3] in (0, 1) and raw_density: [..., num_samples] (before the activation).
    """
    dense = lambda features, use_bias=True: nn.Dense(
        features, use_bias=use_bias, kernel_init=nn.initializers.glorot_uniform())
    # Dense layers on 2-D [rows, features] arrays: XLA's CPU backend computes the weight gradients of
    # higher-rank dot products about 1.5x slower.
    batch_shape = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    h = x
    for i in range(self.depth):
      h = nn.relu(dense(self.width)(h))
      if i + 1 == self.skip_layer and i + 1 < self.depth:
        h = jnp.concatenate([h, x], axis=-1)
    raw_density = dense(1)(h)[..., 0]
    if view is not None:
      # The colour layer sees [bottleneck, encoded view]; its view half is the same for all samples of a
      # ray, so it is applied once per ray and broadcast (the same function, fewer FLOPs).
      per_sample = dense(self.view_width)(dense(self.width)(h))
      per_ray = dense(self.view_width, use_bias=False)(view.reshape(-1, view.shape[-1]))
      num_samples = per_sample.shape[0] // per_ray.shape[0]
      h = nn.relu((per_sample.reshape(per_ray.shape[0], num_samples, -1) + per_ray[:, None, :])
                  .reshape(per_sample.shape))
    rgb = nn.sigmoid(dense(3)(h)).reshape(*batch_shape, 3)
    raw_density = raw_density.reshape(batch_shape)
    return rgb, raw_density


@dataclasses.dataclass(frozen=True)
class RenderSettings:
  """How rays are sampled and composited (hashable, so models stay hashable)."""
  num_coarse_samples: int = 64
  num_fine_samples: int = 128
  lindisp: bool = False
  position_degrees: Tuple[int, int] = (0, 10)
  direction_degrees: Tuple[int, int] = (0, 4)
  use_viewdirs: bool = True
  density_noise: float = 0.0
  background: Tuple[float, ...] = (1.0, 1.0, 1.0)


class NeRF(nn.Module):
  """Coarse and fine networks and the hierarchical rendering pass of the NeRF paper."""
  mlp: MLP
  render: RenderSettings

  def setup(self):
    self.coarse = self.mlp.clone(name="coarse")
    if self.render.num_fine_samples > 0:
      self.fine = self.mlp.clone(name="fine")

  def _shade(self, network, rays, t, key, randomized):
    """Evaluate one network at distances t along the rays and composite. t: [num_rays, num_samples]."""
    points = rays.origins[..., None, :] + t[..., None] * rays.directions[..., None, :]
    x = encoding.positional_encoding(points, *self.render.position_degrees)
    view = (encoding.positional_encoding(rays.viewdirs, *self.render.direction_degrees)
            if self.render.use_viewdirs else None)
    rgb, raw_density = network(x, view)
    if randomized and self.render.density_noise > 0:
      raw_density = raw_density + self.render.density_noise * jax.random.normal(key, raw_density.shape)
    density = nn.relu(raw_density)
    return compositing.composite(rgb, density, t, rays.directions, jnp.asarray(self.render.background))

  def __call__(self, rays, near, far, key, randomized):
    """Render a batch of rays.

    Args:
      rays: Rays with [num_rays, 3] fields.
      near, far: scalars or [num_rays, 1] bounds.
      key: PRNG key (used only when randomized).
      randomized: jitter samples and add density noise (training).

    Returns:
      A list of Composites, [coarse] or [coarse, fine], each with [num_rays, ...] fields.
    """
    keys = jax.random.split(key, 4)
    batch_shape = rays.origins.shape[:-1]
    t = sampling.stratified_samples(keys[0], batch_shape, self.render.num_coarse_samples, near, far,
                                    self.render.lindisp, randomized)
    coarse = self._shade(self.coarse, rays, t, keys[1], randomized)
    if self.render.num_fine_samples == 0:
      return [coarse]
    t = sampling.hierarchical_samples(keys[2], t, coarse.weights, self.render.num_fine_samples, randomized)
    fine = self._shade(self.fine, rays, t, keys[3], randomized)
    return [coarse, fine]
