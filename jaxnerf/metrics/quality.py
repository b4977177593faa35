"""Losses and image quality metrics."""
import dm_pix
import jax.numpy as jnp


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
