"""Multi-frequency sinusoidal (positional) encoding of coordinates."""
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


def encoded_size(dim, min_deg, max_deg, include_input=True):
  """Length of the last axis of `positional_encoding`'s output."""
  return dim * (int(include_input) + 2 * (max_deg - min_deg))
