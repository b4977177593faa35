"""SIREN layers in the paper's MLP: initialisation statistics through depth, and image fitting against ReLU."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import jaxnerf
from jaxnerf import config as config_lib
from jaxnerf.nerf import fields
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import mlp_field


def pre_activations(mlp, params, points):
  """w0 (x W + b) of every trunk layer, in order: [depth] arrays [rows, width]."""
  _, state = mlp.apply(params, points, None, capture_intermediates=True, mutable=["intermediates"])
  dense = state["intermediates"]
  return [mlp.siren_w0 * np.asarray(dense[f"Dense_{i}"]["__call__"][0], np.float64) for i in range(mlp.depth)]


def test_siren_pre_activations_stay_standard_through_depth():
  """SIREN's claim (its section 3.2): with its initialisation, the pre-activations of every later layer are about
  N(0, 1) whatever the depth. The mean-field recursion in float64 predicts each layer's variance from the one
  before: for z ~ N(0, v), E[sin(z)^2] = (1 - exp(-2 v)) / 2, and a kernel and bias uniform in +-sqrt(6/n)/w0
  give w0 (x W + b) the variance 2 E[sin^2] + 2 / n."""
  depth, width = 12, 256
  mlp = mlp_field.NeRFMLP(depth=depth, width=width, skip_layer=depth, position_degrees=(0, 0), use_viewdirs=False,
                       siren_trunk=True, siren_w0=30.0)
  rng = np.random.default_rng(0)
  points = jnp.asarray(rng.uniform(-1, 1, size=(4000, 1, 3)), jnp.float32)
  params = mlp.init(jax.random.key(0), points, None)
  z = pre_activations(mlp, params, points)
  variances = np.array([np.var(layer) for layer in z])
  # The first layer spreads the coordinates over many periods of the sine (w0 = 30).
  assert variances[0] > 10
  predicted = 1.0 - np.exp(-2.0 * variances[:-1]) + 2.0 / width
  np.testing.assert_allclose(variances[1:], predicted, rtol=0.06)
  later = variances[1:]
  assert np.all((later > 0.7) & (later < 1.1)), later
  # From the third layer on, the variance sits at the recursion's fixed point v = 1 - exp(-2 v) + 2 / n.
  fixed_point = 1.0
  for _ in range(100):
    fixed_point = 1.0 - np.exp(-2.0 * fixed_point) + 2.0 / width
  np.testing.assert_allclose(variances[3:], fixed_point, rtol=0.05)
  for layer in z[1:]:
    # Gaussian-shaped, not heavy-tailed: the fraction beyond 2 standard deviations is about 4.6%.
    tail = np.mean(np.abs(layer - layer.mean()) > 2 * layer.std())
    assert 0.03 < tail < 0.065, tail
    assert abs(np.mean(layer)) < 0.1


def image_coordinates(height, width):
  """Pixel centres in [-1, 1]^2 as [height * width, 1, 3] points (z = 0)."""
  y, x = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
  xy = np.stack([2 * x - 1, 2 * y - 1, np.zeros_like(x)], axis=-1).reshape(-1, 1, 3)
  return jnp.asarray(xy, jnp.float32)


def fit_image(mlp, points, target, steps, lr):
  """Full-batch Adam on the squared error; returns the final PSNR of the fit."""
  params = mlp.init(jax.random.key(0), points, None)
  optimizer = optax.adam(lr)
  loss_fn = lambda p: jnp.mean((mlp.apply(p, points, None)[0][:, 0] - target) ** 2)

  @jax.jit
  def step(p, opt_state):
    grads = jax.grad(loss_fn)(p)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(p, updates), opt_state

  opt_state = optimizer.init(params)
  for _ in range(steps):
    params, opt_state = step(params, opt_state)
  return float(-10 * np.log10(loss_fn(params)))


def test_siren_fits_an_image_from_raw_coordinates_better_than_relu():
  """SIREN's image-fitting experiment in small: the same MLP (3 x 64, raw coordinates, no positional encoding),
  the same steps and rate; sine layers reach a far lower error than ReLU layers, which stay blurry."""
  with Image.open(os.path.join(jaxnerf.DEMO_SCENE, "test", "r_0.png")) as image:
    rgba = np.asarray(image.convert("RGBA"), np.float32) / 255.0
  rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
  rgb = rgb.reshape(50, 2, 50, 2, 3).mean(axis=(1, 3))  # 50x50 keeps the test to seconds
  target = jnp.asarray(rgb.reshape(-1, 3))
  points = image_coordinates(*rgb.shape[:2])
  common = dict(depth=3, width=64, skip_layer=3, position_degrees=(0, 0), use_viewdirs=False)
  relu = fit_image(mlp_field.NeRFMLP(**common), points, target, steps=200, lr=1e-3)
  siren = fit_image(mlp_field.NeRFMLP(**common, siren_trunk=True), points, target, steps=200, lr=1e-3)
  print(f"PSNR after 200 steps: SIREN {siren:.2f} dB, ReLU {relu:.2f} dB")
  assert siren > relu + 5.0, (siren, relu)
  assert siren > 25.0, siren


def test_siren_switches_are_config_fields():
  config = config_lib.base_config()
  config.model.mlp.activation, config.model.mlp.color_activation, config.model.mlp.siren_w0 = "siren", "relu", 20.0
  field = fields.FIELDS["mlp"].build(config, config.data.scene_box)
  assert field.siren_trunk and not field.siren_color and field.siren_w0 == 20.0
  config.model.mlp.color_activation = "sine"
  with pytest.raises(ConfigError, match=r"config.model.mlp.color_activation: expected 'relu' or 'siren'"):
    fields.FIELDS["mlp"].build(config, config.data.scene_box)


def test_siren_colour_branch_uses_sines_with_siren_init():
  """With the colour branch alone in SIREN mode, its hidden layer is sin(w0 (...)) with kernels and bias uniform in
  +-sqrt(6/n)/w0 for the layer's whole fan-in n (bottleneck and view encoding together); the trunk stays ReLU."""
  mlp = mlp_field.NeRFMLP(depth=2, width=32, skip_layer=2, view_width=16, siren_color=True, siren_w0=30.0)
  points = jnp.ones((2, 4, 3))
  viewdirs = jnp.asarray([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0]])
  params = mlp.init(jax.random.key(0), points, viewdirs)["params"]
  fan_in = 32 + 27
  bound = np.sqrt(6.0 / fan_in) / 30.0
  for name in ("Dense_4", "Dense_5"):  # the colour layer's bottleneck and view halves
    kernel = np.asarray(params[name]["kernel"])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
  bias = np.asarray(params["Dense_4"]["bias"])
  assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound
  trunk_kernel = np.asarray(params["Dense_0"]["kernel"])
  assert np.abs(trunk_kernel).max() > 0.1  # glorot, far wider than any SIREN bound here
  _, state = mlp.apply({"params": params}, points, viewdirs, capture_intermediates=True, mutable=["intermediates"])
  inter = state["intermediates"]
  per_sample, per_ray = inter["Dense_4"]["__call__"][0], inter["Dense_5"]["__call__"][0]
  hidden = np.sin(30.0 * (np.asarray(per_sample).reshape(2, 4, -1) + np.asarray(per_ray)[:, None]))
  expected = 1 / (1 + np.exp(-(hidden.reshape(8, -1) @ np.asarray(params["Dense_6"]["kernel"])
                               + np.asarray(params["Dense_6"]["bias"]))))
  rgb, _ = mlp.apply({"params": params}, points, viewdirs)
  np.testing.assert_allclose(np.asarray(rgb).reshape(8, 3), expected, atol=1e-5)
