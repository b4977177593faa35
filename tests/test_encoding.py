import jax.numpy as jnp
import numpy as np

from jaxnerf import encoding


def reference_encoding(x, min_deg, max_deg, include_input):
  x = np.asarray(x, np.float64)
  sines = [np.sin(2.0 ** d * x) for d in range(min_deg, max_deg)]
  cosines = [np.cos(2.0 ** d * x) for d in range(min_deg, max_deg)]
  parts = ([x] if include_input else []) + sines + cosines
  return np.concatenate(parts, axis=-1)


def test_matches_float64_reference(rng):
  x = rng.uniform(-1.5, 1.5, size=(4, 7, 3))
  for min_deg, max_deg, include_input in [(0, 10, True), (0, 4, True), (2, 5, False)]:
    out = encoding.positional_encoding(jnp.asarray(x, jnp.float32), min_deg, max_deg, include_input)
    ref = reference_encoding(x, min_deg, max_deg, include_input)
    assert out.shape == ref.shape == (4, 7, encoding.encoded_size(3, min_deg, max_deg, include_input))
    # float32 arguments of up to 2^9 * 1.5 radians.
    np.testing.assert_allclose(out, ref, atol=5e-4)


def test_paper_sizes():
  assert encoding.encoded_size(3, 0, 10) == 63
  assert encoding.encoded_size(3, 0, 4) == 27


def test_no_frequencies():
  x = jnp.ones((2, 3))
  np.testing.assert_array_equal(encoding.positional_encoding(x, 3, 3), x)
  assert encoding.positional_encoding(x, 3, 3, include_input=False).shape == (2, 0)
