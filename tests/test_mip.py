"""mip-NeRF: cone radii of pixels, conical-frustum Gaussians, the integrated positional encoding, the model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf.core import cones
from jaxnerf.nerf import encoding
from jaxnerf.nerf import model as model_lib
from jaxnerf.core import rays as rays_lib
from jaxnerf.nerf import sampling
from jaxnerf.errors import ConfigError
from jaxnerf.run import state as state_lib
from conftest import random_rotation
from test_model import random_rays
from test_model import small_config


def uniform_in_frustum(rng, origin, direction, radius, t0, t1, count):
  """Points uniform in mip-NeRF's frustum by rejection from a box around it (aligned with the ray), straight from
  its definition: x with t0 < d.(x - o) / |d|^2 < t1 and an angle to d below arctan(radius / |d|) (float64)."""
  length = np.linalg.norm(direction)
  basis = np.linalg.svd(direction[:, None])[0]  # orthonormal, first column +-d / |d|
  extent = 1.05 * np.array([(t1 - t0) * length / 2, t1 * radius, t1 * radius])
  local = rng.uniform(-1, 1, size=(count, 3)) * extent
  x = origin + 0.5 * (t0 + t1) * direction + local @ basis.T
  offset = x - origin
  t = offset @ direction / length ** 2
  cosine = offset @ direction / (length * np.linalg.norm(offset, axis=-1))
  inside = (t > t0) & (t < t1) & (cosine > 1.0 / np.sqrt(1.0 + (radius / length) ** 2))
  return x[inside]


@pytest.mark.parametrize("t0, t1, radius", [(2.0, 2.8, 0.3), (0.5, 3.0, 0.15), (4.0, 4.3, 0.5)])
def test_frustum_gaussian_matches_monte_carlo_moments(t0, t1, radius):
  rng = np.random.default_rng(1)
  origin = rng.normal(size=3)
  direction = random_rotation(rng) @ np.array([0.3, -0.2, -1.0])  # not unit length
  points = np.concatenate([uniform_in_frustum(rng, origin, direction, radius, t0, t1, 1_000_000)
                           for _ in range(4)])
  assert len(points) > 200_000
  gaussian = cones.frustum_gaussians(origin[None], direction[None], np.array([[radius]]),
                                     np.array([[t0, t1]]), diagonal=False, xnp=np)
  mean, cov = gaussian.means[0, 0], gaussian.covs[0, 0]
  mc_mean, mc_cov = points.mean(axis=0), np.cov(points, rowvar=False)
  scale = np.sqrt(np.max(np.linalg.eigvalsh(mc_cov)))
  np.testing.assert_allclose(mean, mc_mean, atol=0.01 * scale)
  # Along the axis and across it separately: the across variance is far smaller for thin frustums.
  axis = direction / np.linalg.norm(direction)
  across = np.linalg.svd(np.eye(3) - np.outer(axis, axis))[0][:, :2]
  np.testing.assert_allclose(axis @ cov @ axis, axis @ mc_cov @ axis, rtol=0.02)
  np.testing.assert_allclose(across.T @ cov @ across, across.T @ mc_cov @ across, rtol=0.02,
                             atol=0.02 * np.trace(across.T @ mc_cov @ across) / 2)
  diagonal = cones.frustum_gaussians(origin[None], direction[None], np.array([[radius]]), np.array([[t0, t1]]),
                                     xnp=np)
  np.testing.assert_allclose(diagonal.covs[0, 0], np.diag(cov), rtol=1e-12)


def test_frustum_gaussians_of_many_intervals_in_float32(rng):
  """The jitted float32 path agrees with float64 for the Blender range of t (mip-NeRF's stable form)."""
  origins, directions = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  radii = rng.uniform(0.001, 0.01, size=(5, 1))
  edges = np.sort(rng.uniform(2, 6, size=(5, 65)), axis=-1)
  expected = cones.frustum_gaussians(origins, directions, radii, edges, xnp=np)
  actual = jax.jit(cones.frustum_gaussians)(*(jnp.asarray(a, jnp.float32) for a in (origins, directions, radii,
                                                                                      edges)))
  np.testing.assert_allclose(actual.means, expected.means, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(actual.covs, expected.covs, rtol=2e-3, atol=1e-9)


def positional_encoding_float64(x, min_deg, max_deg):
  """[x, sin(2^l x) for l, cos(2^l x) for l] in positional_encoding's layout, numpy float64."""
  scaled = np.concatenate([x * 2.0 ** l for l in range(min_deg, max_deg)], axis=-1)
  return np.concatenate([x, np.sin(scaled), np.cos(scaled)], axis=-1)


def test_integrated_encoding_is_the_expected_encoding_under_the_gaussian():
  rng = np.random.default_rng(2)
  means = rng.uniform(-1.5, 1.5, size=(6, 3))
  variances = rng.uniform(0.0, 0.05, size=(6, 3)) * np.array([1.0, 0.1, 0.01])
  samples = 200_000
  expected = np.stack([
      positional_encoding_float64(m + np.sqrt(v) * rng.normal(size=(samples, 3)), 0, 8).mean(axis=0)
      for m, v in zip(means, variances)])
  actual = encoding.integrated_positional_encoding(jnp.asarray(means, jnp.float32),
                                                   jnp.asarray(variances, jnp.float32), 0, 8)
  assert actual.shape == (6, encoding.encoded_size(3, 0, 8))
  np.testing.assert_allclose(actual, expected, atol=8e-3)  # 5 standard errors
  # The highest frequencies of the widest coordinate are integrated away.
  assert np.all(np.abs(np.asarray(actual)[:, 3 + 7 * 3]) < np.abs(
      np.sin(means[:, 0] * 2.0 ** 7)) * np.exp(-0.5 * 4.0 ** 7 * variances[:, 0]) + 1e-6)


def test_integrated_encoding_at_vanishing_variance_is_the_plain_encoding(rng):
  means = jnp.asarray(rng.uniform(-2, 2, size=(10, 4, 3)), jnp.float32)
  plain = encoding.positional_encoding(means, 0, 10)
  np.testing.assert_array_equal(encoding.integrated_positional_encoding(means, jnp.zeros_like(means), 0, 10), plain)
  np.testing.assert_allclose(encoding.integrated_positional_encoding(means, jnp.full_like(means, 1e-12), 0, 10),
                             plain, atol=1e-6)
  np.testing.assert_array_equal(
      encoding.integrated_positional_encoding(means, jnp.zeros_like(means), 2, 5, include_input=False),
      encoding.positional_encoding(means, 2, 5, include_input=False))


def test_pixel_radii_are_mip_nerfs_neighbour_spacing(rng):
  """mip-NeRF: radius = distance between neighbouring pixels' directions * 2 / sqrt(12), for any camera."""
  pose = np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], axis=1)
  rays = rays_lib.image_rays(6, 8, 7.5, pose, xnp=np)
  dx = np.linalg.norm(rays.directions[:, 1:] - rays.directions[:, :-1], axis=-1)
  np.testing.assert_allclose(rays.radii[:, :-1, 0], dx * 2 / np.sqrt(12), rtol=1e-5)
  assert rays.radii.shape == (6, 8, 1)


def test_ndc_radii_are_mip_nerfs_spacing_of_ndc_origins(rng):
  """mip-NeRF sizes NDC cones by the mean spacing of neighbouring NDC origins in x and y, times 2 / sqrt(12);
  to_ndc's closed form agrees for a camera whose axes are the NDC frame's, wherever it stands."""
  height, width, focal, near = 30, 40, 35.0, 1.0
  pose = np.concatenate([np.eye(3), rng.normal(size=(3, 1)) * 0.3], axis=1)
  rays = rays_lib.image_rays(height, width, focal, pose, xnp=np)
  ndc = rays_lib.to_ndc(jax.tree.map(lambda a: a.astype(np.float64), rays), width, height, focal, near, xnp=np)
  dx = np.linalg.norm(ndc.origins[:-1, 1:] - ndc.origins[:-1, :-1], axis=-1)
  dy = np.linalg.norm(ndc.origins[1:, :-1] - ndc.origins[:-1, :-1], axis=-1)
  np.testing.assert_allclose(ndc.radii[:-1, :-1, 0], 0.5 * (dx + dy) * 2 / np.sqrt(12), rtol=1e-4)


def test_blurred_weights_against_a_loop(rng):
  weights = rng.uniform(size=(3, 9)) * (rng.uniform(size=(3, 9)) > 0.5)
  padded = np.concatenate([weights[:, :1], weights, weights[:, -1:]], axis=1)
  expected = np.array([[0.5 * (max(p[i], p[i + 1]) + max(p[i + 1], p[i + 2])) for i in range(9)] for p in padded])
  np.testing.assert_allclose(sampling.blur_weights(jnp.asarray(weights)), expected, rtol=1e-6)


def mip_config(**changes):
  return small_config(**{"model.sampler": "mip", "model.mip.num_coarse_samples": 12,
                         "model.mip.num_fine_samples": 12, "model.mlp.position_max_deg": 16, **changes})


def test_mip_model_shares_one_field_and_sees_cone_widths(rng):
  config = mip_config()
  model = model_lib.build_model(config)
  params = state_lib.init_params(model, jax.random.key(0))
  assert list(params) == ["fields_0"]
  rays = random_rays(rng, 16)
  render = jax.jit(lambda r: model.apply({"params": params}, r, 2.0, 6.0, jax.random.key(1), randomized=False))
  thin = render(rays._replace(radii=jnp.zeros((16, 1))))
  for a, b in zip(jax.tree.leaves(thin), jax.tree.leaves(render(rays))):  # radii None: thin rays
    np.testing.assert_array_equal(a, b)
  wide = render(rays._replace(radii=jnp.full((16, 1), 0.05)))
  assert len(wide) == 2 and wide[0].samples.edges.shape == (16, 13) and wide[1].samples.edges.shape == (16, 13)
  assert np.max(np.abs(wide[0].out.rgb - thin[0].out.rgb)) > 1e-3
  # The fine level's intervals crowd where the coarse weights are (blurred, padded).
  assert np.all(np.diff(np.asarray(wide[1].samples.edges), axis=-1) >= 0)


def test_mip_sampler_needs_the_mlp_field():
  with pytest.raises(ConfigError, match=r"config.model.field: the mip sampler needs the 'mlp' field"):
    model_lib.build_model(mip_config(**{"model.field": "hash"}))
