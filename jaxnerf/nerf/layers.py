"""Layers that fields are built of: dense layers whose matmuls may run in bfloat16, SIREN's initialiser, density
activations, and the reshapes that keep XLA's CPU matmuls fast.

`compute_dtype` bfloat16 rounds the MLPs' matmul inputs to bfloat16 (float32 accumulation); parameters, encodings
and outputs stay float32.
"""
import functools
from typing import Callable

import flax.linen as nn
import jax
from jax.experimental import layout
import jax.numpy as jnp

from jaxnerf.errors import ConfigError
from jaxnerf.nerf import encoding

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


def dense_maker(kernel_init, compute_dtype):
  """nn.Dense(features, use_bias, kernel_init, bias_init, name) with the field's defaults and matmul precision."""
  dot_general = matmul_in(compute_dtype)
  return lambda features, use_bias=True, kernel_init=kernel_init, bias_init=nn.initializers.zeros_init(), \
      name=None: nn.Dense(features, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                          dot_general=dot_general, name=name)


def rows(x):
  """[..., d] -> [rows, d]: XLA's CPU backend computes weight gradients of higher-rank dot products about 1.5x
  slower than of 2-D ones."""
  return x.reshape(-1, x.shape[-1])


def add_per_ray(per_sample, per_ray):
  """[rays * samples, c] + [rays, c] broadcast over each ray's samples (rows ray-major)."""
  num_samples = per_sample.shape[0] // per_ray.shape[0]
  return (per_sample.reshape(per_ray.shape[0], num_samples, -1) + per_ray[:, None, :]).reshape(per_sample.shape)


# Raw density outside the scene box: zero density under every activation (trunc_exp(-1e4) = 0 in float32).
EMPTY_RAW_DENSITY = -1e4




def density_activation(name, field_name):
  """The activation DENSITY_ACTIVATIONS[name]; ConfigError naming config.<field_name> for an unknown name."""
  if name not in DENSITY_ACTIVATIONS:
    raise ConfigError(f"config.{field_name}: expected one of {tuple(DENSITY_ACTIVATIONS)}, got {name!r}")
  return DENSITY_ACTIVATIONS[name]


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(config):
  """The fields' matmul input dtype, config.model.compute_dtype."""
  name = config.model.compute_dtype
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f"config.model.compute_dtype: expected one of {COMPUTE_DTYPES}, got {name!r}")
  return jnp.dtype(name)


def per_ray_color_input(dense, features, view, appearance, **init):
  """The colour branch's per-ray term: the encoded view direction view [rays, v] through a layer of `features`
  units without bias, plus, with appearance codes [rays, e] (AppearanceCodes), theirs. Added to each sample's
  term by add_per_ray (the same function as one layer over the concatenation, in fewer FLOPs)."""
  term = dense(features, use_bias=False, **init)(view)
  if appearance is not None:
    # Named, so that the field's other layers keep the names they have without codes.
    term = term + dense(features, use_bias=False, name="appearance", **init)(rows(appearance))
  return term


def density_and_color_heads(field, dense, features, inside, viewdirs, appearance=None):
  """The heads of a grid field (hash grid, planes), called inside its compact __call__: one hidden layer of
  field.density_width units from the encoded points to the raw density and field.geo_features more values;
  those, with the view direction's spherical harmonics (field.sh_degree bands), through field.color_depth hidden
  layers of field.color_width units to the colour.

  Args:
    field: the calling module (its widths, depths and activation).
    dense: layers.dense_maker's layer maker.
    features: [rows, f] encoded points, ray-major.
    inside: [rows] bool, whether each point lies in the field's space (the others get EMPTY_RAW_DENSITY).
    viewdirs: [..., 3] unit directions, one per ray.
    appearance: None, or [..., e] appearance codes, one per ray.

  Returns:
    rgb [rows, 3] in (0, 1) and raw density [rows].
  """
  h = field.activation(dense(field.density_width)(features))
  out = dense(1 + field.geo_features)(h)
  raw_density = jnp.where(inside, out[:, 0], EMPTY_RAW_DENSITY)
  # The view direction's layer is applied once per ray and broadcast over the ray's samples.
  view = rows(encoding.spherical_harmonics(viewdirs, field.sh_degree))
  h = field.activation(add_per_ray(dense(field.color_width)(out),
                                   per_ray_color_input(dense, field.color_width, view, appearance)))
  for _ in range(field.color_depth - 1):
    h = field.activation(dense(field.color_width)(h))
  return nn.sigmoid(dense(3)(h)), raw_density
