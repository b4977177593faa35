"""Image quality: mean squared error, PSNR, SSIM, and PSNR after a per-image colour fit."""
import dm_pix
import jax.numpy as jnp
import numpy as np


def mse(prediction, target):
  """Mean squared error over all elements."""
  return jnp.mean((prediction - target) ** 2)


def psnr_from_mse(value):
  """Peak signal-to-noise ratio in dB for images in [0, 1]."""
  return -10.0 * jnp.log10(value)


def ssim(image, reference):
  """Structural similarity of two [height, width, 3] images in [0, 1]: 11x11 Gaussian window with sigma 1.5,
  k1 = 0.01, k2 = 0.03, valid-region filtering, mean over pixels and channels (the NeRF papers' SSIM)."""
  return dm_pix.ssim(jnp.asarray(image, jnp.float32), jnp.asarray(reference, jnp.float32), max_val=1.0)


def color_fit(image, reference):
  """`image` [h, w, 3] after the affine colour map (a 3x3 matrix and an offset) that brings it closest to
  `reference` in least squares: the per-image colour correction of the mip-NeRF 360 line of work, which scores
  geometry and view-dependent colour apart from a photo's exposure and white balance. float64 numpy."""
  x = np.asarray(image, np.float64).reshape(-1, 3)
  y = np.asarray(reference, np.float64).reshape(-1, 3)
  design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
  coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
  return (design @ coefficients).reshape(np.shape(image))
