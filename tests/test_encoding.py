import jax.numpy as jnp
import numpy as np

from jaxnerf.nerf import encoding


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


def sphere_quadrature(num_theta=12, num_phi=24):
  """Nodes and weights integrating polynomials of degree < 2 * num_theta exactly over the unit sphere
  (Gauss-Legendre in cos(theta), uniform in phi)."""
  cos_theta, w_theta = np.polynomial.legendre.leggauss(num_theta)
  phi = np.arange(num_phi) * 2 * np.pi / num_phi
  c, p = np.meshgrid(cos_theta, phi, indexing="ij")
  s = np.sqrt(1 - c ** 2)
  points = np.stack([s * np.cos(p), s * np.sin(p), c], -1).reshape(-1, 3)
  weights = (w_theta[:, None] * np.full(num_phi, 2 * np.pi / num_phi)).reshape(-1)
  return points, weights


def test_spherical_harmonics_are_orthonormal():
  points, weights = sphere_quadrature()
  y = np.asarray(encoding.spherical_harmonics(jnp.asarray(points, jnp.float32), 4), np.float64)
  assert y.shape == (len(points), 16)
  gram = (y * weights[:, None]).T @ y
  np.testing.assert_allclose(gram, np.eye(16), atol=2e-5)


def test_spherical_harmonics_bands_span_polynomials_of_their_degree(rng):
  """Bands 0 .. l span exactly the polynomials of degree <= l restricted to the sphere (the closed-form basis,
  up to a rotation within each band)."""
  d = rng.normal(size=(400, 3))
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  y = np.asarray(encoding.spherical_harmonics(jnp.asarray(d, jnp.float32), 4), np.float64)
  x_, y_, z_ = d.T
  monomials = {0: [np.ones(400)], 1: [x_, y_, z_], 2: [x_ * x_, y_ * y_, z_ * z_, x_ * y_, y_ * z_, x_ * z_],
               3: [a * b * c for i, a in enumerate((x_, y_, z_)) for j, b in enumerate((x_, y_, z_)) if j >= i
                   for k, c in enumerate((x_, y_, z_)) if k >= j]}
  for degree in range(4):
    polys = np.stack([m for deg in range(degree + 1) for m in monomials[deg]], -1)
    basis = y[:, :(degree + 1) ** 2]
    coeffs = np.linalg.lstsq(polys, basis, rcond=None)[0]
    np.testing.assert_allclose(polys @ coeffs, basis, atol=1e-5)  # each band is such a polynomial
  # Known closed forms: Y_0 is constant and Y_2^0 is proportional to 3 z^2 - 1.
  np.testing.assert_allclose(y[:, 0], 0.5 / np.sqrt(np.pi), rtol=1e-6)
  np.testing.assert_allclose(y[:, 6], np.sqrt(5 / (16 * np.pi)) * (3 * z_ ** 2 - 1), atol=1e-6)


def test_spherical_harmonics_lower_degrees_are_prefixes(rng):
  d = rng.normal(size=(10, 3))
  d = jnp.asarray(d / np.linalg.norm(d, axis=-1, keepdims=True), jnp.float32)
  full = encoding.spherical_harmonics(d, 4)
  for degree in (1, 2, 3):
    np.testing.assert_array_equal(encoding.spherical_harmonics(d, degree), full[:, :degree ** 2])
