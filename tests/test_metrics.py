import numpy as np

from jaxnerf.metrics import quality as metrics


def gaussian_valid_filter(image, size=11, sigma=1.5):
  """Separable Gaussian blur of [H, W, C] keeping only the fully covered ('valid') region, float64."""
  x = np.arange(size) - (size - 1) / 2
  g = np.exp(-0.5 * (x / sigma) ** 2)
  g /= g.sum()
  h, w, _ = image.shape
  rows = sum(g[k] * image[k:h - size + 1 + k] for k in range(size))
  return sum(g[k] * rows[:, k:w - size + 1 + k] for k in range(size))


def reference_ssim(a, b, k1=0.01, k2=0.03):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mu_a, mu_b = gaussian_valid_filter(a), gaussian_valid_filter(b)
  var_a = gaussian_valid_filter(a * a) - mu_a ** 2
  var_b = gaussian_valid_filter(b * b) - mu_b ** 2
  cov = gaussian_valid_filter(a * b) - mu_a * mu_b
  c1, c2 = k1 ** 2, k2 ** 2
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return ssim_map.mean()


def test_ssim_matches_float64_reference(rng):
  clean = rng.uniform(size=(40, 36, 3))
  smooth = gaussian_valid_filter(np.pad(clean, ((5, 5), (5, 5), (0, 0)), mode="reflect"))
  for noisy in [np.clip(smooth + rng.normal(0, s, smooth.shape), 0, 1) for s in (0.02, 0.1, 0.3)]:
    np.testing.assert_allclose(float(metrics.ssim(noisy, smooth)), reference_ssim(noisy, smooth), atol=1e-5)


def test_ssim_of_identical_images_is_one(rng):
  image = rng.uniform(size=(20, 20, 3))
  np.testing.assert_allclose(float(metrics.ssim(image, image)), 1.0, atol=1e-6)


def test_psnr_closed_form():
  np.testing.assert_allclose(float(metrics.psnr_from_mse(0.01)), 20.0, rtol=1e-6)
  a = np.zeros((4, 4, 3), np.float32)
  b = np.full((4, 4, 3), 0.1, np.float32)
  np.testing.assert_allclose(float(metrics.psnr_from_mse(metrics.mse(a, b))), 20.0, rtol=1e-5)


def test_color_fit_undoes_an_affine_colour_change_and_no_more(rng):
  reference = rng.random((16, 12, 3))
  matrix = np.diag([0.7, 1.2, 0.9]) + 0.05 * rng.normal(size=(3, 3))
  offset = np.array([0.05, -0.02, 0.1])
  changed = (reference - offset) @ np.linalg.inv(matrix).T  # changed @ matrix.T + offset == reference
  np.testing.assert_allclose(metrics.color_fit(changed, reference), reference, atol=1e-10)
  # Noise that no colour map explains stays: the fit is least squares, no better than the noise.
  noisy = reference + 0.1 * rng.normal(size=reference.shape)
  residual = metrics.color_fit(noisy, reference) - reference
  assert 0.05 < np.sqrt(np.mean(residual ** 2)) < 0.1
