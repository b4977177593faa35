"""Multi-frequency sinusoidal (positional) encoding of coordinates, its integral over a Gaussian (mip-NeRF), and
spherical harmonics of directions."""
import jax.numpy as jnp


def positional_encoding(x, min_deg, max_deg, include_input=True):
  """Encode coordinates with sines and cosines of frequencies 2^min_deg ... 2^(max_deg - 1).

  Args:
    x: [..., d] coordinates.
    min_deg, max_deg: frequency range; max_deg is exclusive.
    include_input: prepend the raw coordinates.

  Returns:
    [..., d * (include_input + 2 * (max_deg - min_deg))], laid out as
    [x, sin(2^min_deg x), ..., sin(2^(max_deg-1) x), cos(2^min_deg x), ..., cos(2^(max_deg-1) x)] with the
    d coordinates innermost in each block.
  """
  if min_deg == max_deg:
    return x if include_input else x[..., :0]
  scales = 2.0 ** jnp.arange(min_deg, max_deg, dtype=x.dtype)  # [num_freqs]
  scaled = (x[..., None, :] * scales[:, None]).reshape(*x.shape[:-1], -1)  # [..., num_freqs * d]
  # cos(x) = sin(x + pi/2): one sine call for both halves.
  encoded = jnp.sin(jnp.concatenate([scaled, scaled + 0.5 * jnp.pi], axis=-1))
  return jnp.concatenate([x, encoded], axis=-1) if include_input else encoded


def integrated_positional_encoding(means, variances, min_deg, max_deg, include_input=True):
  """mip-NeRF's integrated positional encoding: the expectation of `positional_encoding` over x ~ N(means,
  diag(variances)), in closed form: E[sin(s x)] = sin(s mean) exp(-s^2 var / 2) (likewise for cos), so frequencies
  finer than the Gaussian's spread fade out. At zero variance it is `positional_encoding` of the means (the input
  block, E[x], is the means).

  Args:
    means, variances: [..., d] (a diagonal covariance: each coordinate's sinusoids only see its own variance).
    min_deg, max_deg: frequency range 2^min_deg ... 2^(max_deg - 1).
    include_input: prepend the means.

  Returns:
    [..., encoded_size(d, min_deg, max_deg, include_input)], laid out as positional_encoding's output.
  """
  if min_deg == max_deg:
    return means if include_input else means[..., :0]
  scales = 2.0 ** jnp.arange(min_deg, max_deg, dtype=means.dtype)  # [num_freqs]
  flat = lambda a: a.reshape(*means.shape[:-1], -1)  # [..., num_freqs, d] -> [..., num_freqs * d]
  scaled = flat(means[..., None, :] * scales[:, None])
  damping = jnp.exp(-0.5 * flat(variances[..., None, :] * scales[:, None] ** 2))
  encoded = jnp.sin(jnp.concatenate([scaled, scaled + 0.5 * jnp.pi], axis=-1)) * jnp.concatenate(
      [damping, damping], axis=-1)
  return jnp.concatenate([means, encoded], axis=-1) if include_input else encoded


def encoded_size(dim, min_deg, max_deg, include_input=True):
  """Length of the last axis of `positional_encoding`'s output."""
  return dim * (int(include_input) + 2 * (max_deg - min_deg))


def spherical_harmonics(directions, degree):
  """Real spherical harmonics of unit directions, bands l = 0 .. degree - 1 (degree**2 values; degree <= 4).

  The orthonormal real basis on the sphere (integral of Y_i Y_j over the sphere is delta_ij), written as
  polynomials in the direction's coordinates.

  Args:
    directions: [..., 3] unit vectors.
    degree: number of bands, 1 to 4.

  Returns:
    [..., degree**2], band by band, m = -l .. l within band l.
  """
  if not 1 <= degree <= 4:
    raise ValueError(f"spherical harmonics degree must be 1 to 4, got {degree}")
  x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
  bands = [[jnp.full_like(x, 0.28209479177387814)]]
  if degree > 1:
    bands.append([-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x])
  if degree > 2:
    xx, yy, zz = x * x, y * y, z * z
    bands.append([1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                  0.94617469575755997 * zz - 0.31539156525251999, -1.0925484305920792 * x * z,
                  0.54627421529603959 * (xx - yy)])
  if degree > 3:
    bands.append([0.59004358992664352 * y * (3 * xx - yy), 2.8906114426405538 * x * y * z,
                  0.45704579946446572 * y * (5 * zz - 1), 0.3731763325901154 * z * (5 * zz - 3),
                  0.45704579946446572 * x * (5 * zz - 1), 1.4453057213202769 * z * (xx - yy),
                  0.59004358992664352 * x * (xx - 3 * yy)])
  return jnp.stack([value for band in bands for value in band], axis=-1)
