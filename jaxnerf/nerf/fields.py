"""Fields: functions of a point (and a view direction) to colour and raw volume density.

Every field maps `(points [..., num_samples, 3], viewdirs [..., 3] or None)` to `(rgb [..., num_samples, 3] or
None, raw_density [..., num_samples])` and names the activation that turns raw density into density
(`density_activation`), so that the renderer can add noise to the raw value first. A field is an encoder and one
or two MLPs; the MLPs' activation and initialiser are fields of the modules, and the paper's MLP can use SIREN's
sine layers instead of ReLU layers in its trunk, its colour branch or both. `compute_dtype` bfloat16 rounds the
MLPs' matmul inputs to bfloat16 (float32 accumulation); parameters, encodings and outputs stay float32.
"""
import functools
from typing import Any, Callable, Tuple

import flax.linen as nn
import jax
from jax.experimental import layout
import jax.numpy as jnp

from jaxnerf.core import cones
from jaxnerf.core import contraction
from jaxnerf.nerf import encoding
from jaxnerf.nerf import hash_encoding

Initializer = Callable[..., jnp.ndarray]


@jax.custom_jvp
def trunc_exp(x):
  """exp(x) whose gradient is taken at min(x, 15): density that grows fast without exploding gradients."""
  return jnp.exp(x)


@trunc_exp.defjvp
def _trunc_exp_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return jnp.exp(x), dx * jnp.exp(jnp.minimum(x, 15.0))


DENSITY_ACTIVATIONS = {"relu": nn.relu, "softplus": nn.softplus, "trunc_exp": trunc_exp}


def siren_init(w0, first_layer, fan_in):
  """SIREN's initialiser (Sitzmann et al. 2020) of the kernel and bias of a layer sin(w0 (x W + b)) with `fan_in`
  inputs n: uniform in (-1/n, 1/n) for the first layer (the one that sees the coordinates), else uniform in
  (-sqrt(6/n)/w0, sqrt(6/n)/w0), which keeps the pre-activations w0 (x W + b) of a sine network about standard
  normal at every depth. Biases are drawn alike (SIREN's reference code keeps PyTorch's default U(+-1/sqrt(n)) for
  them, which adds about w0^2 / (3 n) to the pre-activations' variance)."""
  bound = 1.0 / fan_in if first_layer else (6.0 / fan_in) ** 0.5 / w0
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rounded_matmul(x, w, dtype):
  return jnp.dot(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def row_major_transpose(a):
  """a.T of a matrix; on CPU pinned to a row-major layout. XLA's CPU backend runs a bfloat16 matmul fast (as a
  YNNPACK kernel) only if both operands are row-major and contracted over the left one's last axis and the right
  one's first; left to itself it folds a transpose into the matmul's dimension numbers instead, and then runs the
  input gradient's matmul at under half that speed and converts the weight gradient's to float32."""
  if jax.default_backend() != "cpu":
    return a.T
  return layout.with_layout_constraint(a.T, layout.Layout(major_to_minor=(0, 1)))


def _rounded_matmul_fwd(x, w, dtype):
  x, w = x.astype(dtype), w.astype(dtype)
  # Kept instead of x: the weight gradient's left operand, transposed once here.
  return jnp.dot(x, w, preferred_element_type=jnp.float32), (row_major_transpose(x), w)


def _rounded_matmul_bwd(dtype, residuals, g):
  # The backward matmuls round the cotangent too, so all three run in `dtype`; the gradients come back in
  # float32, not rounded to `dtype` as the transpose of a cast would leave them.
  x_t, w = residuals
  g = g.astype(dtype)
  return (jnp.dot(g, row_major_transpose(w), preferred_element_type=jnp.float32),
          jnp.dot(x_t, g, preferred_element_type=jnp.float32))


_rounded_matmul.defvjp(_rounded_matmul_fwd, _rounded_matmul_bwd)


def matmul_in(compute_dtype):
  """A dot_general for flax.linen.Dense whose [rows, k] x [k, n] matmuls take float32 arrays, round them (and, in
  the backward pass, the output's cotangent) to `compute_dtype` and accumulate in float32; None (flax's own
  float32 matmul) for float32."""
  dtype = jnp.dtype(compute_dtype)
  if dtype == jnp.float32:
    return None

  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type
    if lhs.ndim != 2 or dimension_numbers != (((1,), (0,)), ((), ())):
      raise ValueError(f"matmul_in: expected a [rows, k] x [k, n] matmul, got shapes {lhs.shape}, {rhs.shape}")
    return _rounded_matmul(lhs, rhs, dtype)

  return dot_general


def _dense_maker(kernel_init, compute_dtype):
  """nn.Dense(features, use_bias, kernel_init, bias_init) with the field's defaults and matmul precision."""
  dot_general = matmul_in(compute_dtype)
  return lambda features, use_bias=True, kernel_init=kernel_init, bias_init=nn.initializers.zeros_init(): nn.Dense(
      features, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init, dot_general=dot_general)


def _rows(x):
  """[..., d] -> [rows, d]: XLA's CPU backend computes weight gradients of higher-rank dot products about 1.5x
  slower than of 2-D ones."""
  return x.reshape(-1, x.shape[-1])


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
  kernel_init: Initializer = nn.initializers.glorot_uniform()
  density_activation: Callable = nn.relu
  siren_trunk: bool = False
  siren_color: bool = False
  siren_w0: float = 30.0
  compute_dtype: Any = jnp.float32
  contraction: bool = False

  @nn.compact
  def __call__(self, points, viewdirs):
    """points: [..., num_samples, 3], or cones.Gaussians with [..., num_samples, 3] means and [..., num_samples, 3]
    covariance diagonals or [..., num_samples, 3, 3] full covariances; viewdirs: [..., 3] unit directions. Returns
    rgb [..., num_samples, 3] in (0, 1) and raw density [..., num_samples]."""
    dense = _dense_maker(self.kernel_init, self.compute_dtype)
    if isinstance(points, cones.Gaussians):
      means, covs = points
      batch_shape = means.shape[:-1]
      full = covs.shape == (*means.shape, 3)
      if self.contraction:
        if not full:
          raise ValueError("NeRFMLP: contraction needs the Gaussians' full covariances [..., 3, 3], got diagonals")
        means, covs = contraction.contract_gaussians(means, covs)
      variances = jnp.diagonal(covs, axis1=-2, axis2=-1) if full else covs
      x = _rows(encoding.integrated_positional_encoding(means, variances, *self.position_degrees))
    else:
      batch_shape = points.shape[:-1]
      if self.contraction:
        points = contraction.contract(points)
      x = _rows(encoding.positional_encoding(points, *self.position_degrees))
    h = x
    for i in range(self.depth):
      h = self._hidden(h, self.width, self.siren_trunk, first_layer=i == 0)
      if i + 1 == self.skip_layer and i + 1 < self.depth:
        h = jnp.concatenate([h, x], axis=-1)
    raw_density = dense(1)(h)[..., 0]
    if self.use_viewdirs:
      # The colour layer sees [bottleneck, encoded view]; its view half is the same for all samples of a
      # ray, so it is applied once per ray and broadcast (the same function, fewer FLOPs).
      view = _rows(encoding.positional_encoding(viewdirs, *self.direction_degrees))
      bottleneck = dense(self.width)(h)
      if self.siren_color:
        fan_in = bottleneck.shape[-1] + view.shape[-1]
        init = siren_init(self.siren_w0, False, fan_in)
        pre = _add_per_ray(dense(self.view_width, kernel_init=init, bias_init=init)(bottleneck),
                           dense(self.view_width, use_bias=False, kernel_init=init)(view))
        h = jnp.sin(self.siren_w0 * pre)
      else:
        h = self.activation(_add_per_ray(dense(self.view_width)(bottleneck),
                                         dense(self.view_width, use_bias=False)(view)))
    rgb = nn.sigmoid(dense(3)(h)).reshape(*batch_shape, 3)
    return rgb, raw_density.reshape(batch_shape)

  def _hidden(self, h, features, siren, first_layer):
    """One hidden layer of the trunk: [rows, fan_in] -> [rows, features]."""
    dense = _dense_maker(self.kernel_init, self.compute_dtype)
    if not siren:
      return self.activation(dense(features)(h))
    init = siren_init(self.siren_w0, first_layer, h.shape[-1])
    return jnp.sin(self.siren_w0 * dense(features, kernel_init=init, bias_init=init)(h))


def _add_per_ray(per_sample, per_ray):
  """[rays * samples, c] + [rays, c] broadcast over each ray's samples (rows ray-major)."""
  num_samples = per_sample.shape[0] // per_ray.shape[0]
  return (per_sample.reshape(per_ray.shape[0], num_samples, -1) + per_ray[:, None, :]).reshape(per_sample.shape)


def unit_coordinates(points, scene_box, contract):
  """Points mapped to the unit cube where hash grids (and occupancy grids) live, and whether they lie inside it.

  Without contraction the scene box maps to the cube and points outside the box fall outside it (their fields are
  empty there); with contraction, contract(points) in the ball of radius 2 maps from [-2, 2]^3 and every point is
  inside.

  Args:
    points: [..., 3].
    scene_box: (min_x, min_y, min_z, max_x, max_y, max_z), used without contraction.
    contract: apply mip-NeRF 360's scene contraction (contraction.py) instead of the scene box.

  Returns:
    [..., 3] coordinates (outside [0, 1] for points outside the box) and [...] bool.
  """
  if contract:
    radius = contraction.CONTRACTED_RADIUS
    return (contraction.contract(points) + radius) / (2.0 * radius), jnp.ones(points.shape[:-1], bool)
  lo, hi = jnp.asarray(scene_box[:3], points.dtype), jnp.asarray(scene_box[3:], points.dtype)
  x = (points - lo) / (hi - lo)
  return x, jnp.all((x >= 0.0) & (x <= 1.0), axis=-1)


def grid_cell_size(scene_box, contract, resolution):
  """The length in the scene of the cells of a resolution^3 grid over the unit cube: the cell side, or with
  contraction [R, R, R] per cell, the scene length of the cell's contracted side along the radius through its
  centre (the direction of rays from the cameras, near the centre): the side inside radius 1, growing as the
  square of the scene radius beyond it, infinite for the cube's corner cells beyond radius 2, which no point
  reaches."""
  if not contract:
    return min(scene_box[i + 3] - scene_box[i] for i in range(3)) / resolution
  radius = contraction.CONTRACTED_RADIUS
  side = 2.0 * radius / resolution
  centres = (jnp.arange(resolution) + 0.5) * side - radius
  s = jnp.sqrt(centres[:, None, None] ** 2 + centres[None, :, None] ** 2 + centres[None, None, :] ** 2)
  # Contracted radius s = 2 - 1/r: dr/ds = 1 / (2 - s)^2 = r^2.
  stretch = jnp.where(s <= 1.0, 1.0, 1.0 / jnp.maximum(2.0 - s, 0.0) ** 2)
  return side * stretch


def points_at_unit_coordinates(x, scene_box, contract):
  """The inverse of `unit_coordinates`: [..., 3] coordinates in the unit cube -> [..., 3] points (with contraction,
  coordinates outside the inscribed ball of radius 1/2 around the cube's centre map to infinity)."""
  if contract:
    radius = contraction.CONTRACTED_RADIUS
    return contraction.inverse_contract(x * (2.0 * radius) - radius)
  lo, hi = jnp.asarray(scene_box[:3], x.dtype), jnp.asarray(scene_box[3:], x.dtype)
  return lo + x * (hi - lo)


# Raw density outside the scene box: zero density under every activation (trunc_exp(-1e4) = 0 in float32).
EMPTY_RAW_DENSITY = -1e4


class HashField(nn.Module):
  """A hash-grid field (Instant-NGP): the encoding of the point in the scene box through one hidden layer gives the
  raw density and `geo_features` more values; those, with the view direction's spherical harmonics, go through
  `color_depth` hidden layers to the colour. Space outside the box is empty, unless `contraction` encodes all of
  space, contracted (unit_coordinates)."""
  encoding: hash_encoding.HashEncoding
  scene_box: Tuple[float, ...]
  contraction: bool = False
  density_width: int = 64
  geo_features: int = 15
  color_width: int = 64
  color_depth: int = 2
  sh_degree: int = 4
  activation: Callable = nn.relu
  kernel_init: Initializer = nn.initializers.glorot_uniform()
  density_activation: Callable = trunc_exp
  compute_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, points, viewdirs):
    """points: [..., num_samples, 3]; viewdirs: [..., 3] unit directions. Returns rgb [..., num_samples, 3] in
    (0, 1) and raw density [..., num_samples]."""
    dense = _dense_maker(self.kernel_init, self.compute_dtype)
    batch_shape = points.shape[:-1]
    x, inside = unit_coordinates(points, self.scene_box, self.contraction)
    h = self.activation(dense(self.density_width)(self.encoding(_rows(x))))
    out = dense(1 + self.geo_features)(h)
    raw_density = jnp.where(inside.reshape(-1), out[:, 0], EMPTY_RAW_DENSITY)
    view = _rows(encoding.spherical_harmonics(viewdirs, self.sh_degree))
    h = self.activation(_add_per_ray(dense(self.color_width)(out), dense(self.color_width, use_bias=False)(view)))
    for _ in range(self.color_depth - 1):
      h = self.activation(dense(self.color_width)(h))
    rgb = nn.sigmoid(dense(3)(h)).reshape(*batch_shape, 3)
    return rgb, raw_density.reshape(batch_shape)


class HashDensityField(nn.Module):
  """A density-only hash-grid field (the proposal networks of mip-NeRF 360 / Zip-NeRF): encoding, one hidden
  layer, raw density. Returns (None, raw density [..., num_samples]) for points [..., num_samples, 3]. Points are
  mapped as in HashField."""
  encoding: hash_encoding.HashEncoding
  scene_box: Tuple[float, ...]
  contraction: bool = False
  width: int = 16
  activation: Callable = nn.relu
  kernel_init: Initializer = nn.initializers.glorot_uniform()
  density_activation: Callable = trunc_exp
  compute_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, points, viewdirs):
    del viewdirs
    dense = _dense_maker(self.kernel_init, self.compute_dtype)
    x, inside = unit_coordinates(points, self.scene_box, self.contraction)
    h = self.activation(dense(self.width)(self.encoding(_rows(x))))
    raw_density = dense(1)(h)[:, 0]
    return None, jnp.where(inside.reshape(-1), raw_density, EMPTY_RAW_DENSITY).reshape(points.shape[:-1])
