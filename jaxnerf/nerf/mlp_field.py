"""The NeRF paper's field: a positional encoding into an MLP with a skip connection, a density head and a colour
branch that sees the encoded view direction; SIREN's sine layers as an option, mip-NeRF's conical frustums as
inputs, and mip-NeRF 360's contraction for unbounded scenes.

A field maps `(points [..., num_samples, 3], viewdirs [..., 3])` to `(rgb [..., num_samples, 3] or None,
raw_density [..., num_samples])` and names the activation that turns raw density into density
(`density_activation`), so that the renderer can add noise to the raw value first.
"""
from typing import Any, Callable, Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jaxnerf.core import cones
from jaxnerf.core import contraction
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import encoding
from jaxnerf.nerf import layers


class NeRFMLP(nn.Module):
  """The NeRF paper's field: positional encoding, then `depth` layers of `width` units with the encoded position
  concatenated back in after layer `skip_layer`; a density head on the trunk; a colour branch that takes a linear
  bottleneck of the trunk with the encoded view direction through one layer of `view_width` units.

  With `siren_trunk` the trunk's hidden layers, with `siren_color` the colour branch's hidden layer, are SIREN
  layers sin(w0 (x W + b)) with SIREN's initialisation (`siren_w0` is w0; the trunk's first layer is SIREN's first
  layer, the others are later layers); linear layers (heads, bottleneck) keep `kernel_init`. Position degrees
  (0, 0) feed the raw coordinates, as SIREN does.

  Given cones.Gaussians (mip-NeRF's conical frustums) instead of points, it encodes them with the integrated
  positional encoding of their covariances' diagonals.

  With `contraction` it sees contracted points (contraction.contract), so that it covers unbounded scenes;
  Gaussians then need full covariances, which go through the contraction's Jacobian.
  """
  depth: int = 8
  width: int = 256
  skip_layer: int = 4
  view_width: int = 128
  position_degrees: Tuple[int, int] = (0, 10)
  direction_degrees: Tuple[int, int] = (0, 4)
  use_viewdirs: bool = True
  activation: Callable = nn.relu
  kernel_init: layers.Initializer = nn.initializers.glorot_uniform()
  density_activation: Callable = nn.relu
  siren_trunk: bool = False
  siren_color: bool = False
  siren_w0: float = 30.0
  compute_dtype: Any = jnp.float32
  contraction: bool = False
  empty_outside_box = False  # fields everywhere, not only in the scene box (occupancy.py)

  @nn.compact
  def __call__(self, points, viewdirs, appearance=None):
    """points: [..., num_samples, 3], or cones.Gaussians with [..., num_samples, 3] means and [..., num_samples, 3]
    covariance diagonals or [..., num_samples, 3, 3] full covariances; viewdirs: [..., 3] unit directions;
    appearance: None or [..., e] appearance codes (into the colour branch, with use_viewdirs). Returns rgb
    [..., num_samples, 3] in (0, 1) and raw density [..., num_samples]."""
    dense = layers.dense_maker(self.kernel_init, self.compute_dtype)
    if isinstance(points, cones.Gaussians):
      means, covs = points
      batch_shape = means.shape[:-1]
      full = covs.shape == (*means.shape, 3)
      if self.contraction:
        if not full:
          raise ValueError("NeRFMLP: contraction needs the Gaussians' full covariances [..., 3, 3], got diagonals")
        means, covs = contraction.contract_gaussians(means, covs)
      variances = jnp.diagonal(covs, axis1=-2, axis2=-1) if full else covs
      x = layers.rows(encoding.integrated_positional_encoding(means, variances, *self.position_degrees))
    else:
      batch_shape = points.shape[:-1]
      if self.contraction:
        points = contraction.contract(points)
      x = layers.rows(encoding.positional_encoding(points, *self.position_degrees))
    h = x
    for i in range(self.depth):
      h = self._hidden(h, self.width, self.siren_trunk, first_layer=i == 0)
      if i + 1 == self.skip_layer and i + 1 < self.depth:
        h = jnp.concatenate([h, x], axis=-1)
    raw_density = dense(1)(h)[..., 0]
    if self.use_viewdirs:
      # The colour layer sees [bottleneck, encoded view]; its view half is the same for all samples of a
      # ray, so it is applied once per ray and broadcast (the same function, fewer FLOPs).
      view = layers.rows(encoding.positional_encoding(viewdirs, *self.direction_degrees))
      bottleneck = dense(self.width)(h)
      if self.siren_color:
        fan_in = bottleneck.shape[-1] + view.shape[-1]
        init = layers.siren_init(self.siren_w0, False, fan_in)
        pre = layers.add_per_ray(dense(self.view_width, kernel_init=init, bias_init=init)(bottleneck),
                                 layers.per_ray_color_input(dense, self.view_width, view, appearance,
                                                            kernel_init=init))
        h = jnp.sin(self.siren_w0 * pre)
      else:
        h = self.activation(layers.add_per_ray(dense(self.view_width)(bottleneck),
                                               layers.per_ray_color_input(dense, self.view_width, view, appearance)))
    rgb = nn.sigmoid(dense(3)(h)).reshape(*batch_shape, 3)
    return rgb, raw_density.reshape(batch_shape)

  def _hidden(self, h, features, siren, first_layer):
    """One hidden layer of the trunk: [rows, fan_in] -> [rows, features]."""
    dense = layers.dense_maker(self.kernel_init, self.compute_dtype)
    if not siren:
      return self.activation(dense(features)(h))
    init = layers.siren_init(self.siren_w0, first_layer, h.shape[-1])
    return jnp.sin(self.siren_w0 * dense(features, kernel_init=init, bias_init=init)(h))




def default_config():
  """config.model.mlp: the NeRF paper's Blender settings."""
  c = ml_collections.ConfigDict()
  c.depth = 8
  c.width = 256
  c.skip_layer = 4  # the encoded input is concatenated back after this layer
  c.view_width = 128
  c.use_viewdirs = True
  c.position_min_deg = 0
  c.position_max_deg = 10
  c.direction_min_deg = 0
  c.direction_max_deg = 4
  c.density_activation = "relu"
  c.activation = "relu"  # hidden layers of the trunk: "relu" or "siren" (sin(w0 x), SIREN's init)
  c.color_activation = "relu"  # the colour branch's hidden layer: "relu" or "siren"
  c.siren_w0 = 30.0  # w0 of SIREN layers
  return c


def build(config, scene_box):
  """The NeRFMLP of config.model.mlp (it covers all of space: the scene box does not bound it)."""
  del scene_box
  m = config.model.mlp
  if m.depth <= 0 or m.width <= 0:
    raise ConfigError(f"config.model.mlp.depth/width: expected positive sizes, got {m.depth} and {m.width}")
  if m.siren_w0 <= 0:
    raise ConfigError(f"config.model.mlp.siren_w0: expected a positive frequency, got {m.siren_w0}")
  return NeRFMLP(
      depth=m.depth, width=m.width, skip_layer=m.skip_layer, view_width=m.view_width,
      position_degrees=(m.position_min_deg, m.position_max_deg),
      direction_degrees=(m.direction_min_deg, m.direction_max_deg), use_viewdirs=m.use_viewdirs,
      density_activation=layers.density_activation(m.density_activation, "model.mlp.density_activation"),
      siren_trunk=_is_siren(m.activation, "model.mlp.activation"),
      siren_color=_is_siren(m.color_activation, "model.mlp.color_activation"), siren_w0=m.siren_w0,
      compute_dtype=layers.compute_dtype(config), contraction=config.model.contraction)


def _is_siren(name, field_name):
  """Whether an MLP activation setting ("relu" or "siren") names SIREN's sine layers."""
  if name not in ("relu", "siren"):
    raise ConfigError(f"config.{field_name}: expected 'relu' or 'siren', got {name!r}")
  return name == "siren"
