"""Depth maps people can read: depth (or disparity) over the range of a view's valid pixels, through turbo, a
perceptual rainbow colour map; pixels where rays hit nothing get a colour outside the map."""
import numpy as np

# Turbo (Mikhailov, Google, 2019) at 17 evenly spaced points from 0 to 1; linear in between stays within 0.03 of
# the published map in every channel.
TURBO_ANCHORS = np.array([
    (0.1900, 0.0718, 0.2322), (0.2511, 0.2524, 0.6337), (0.2763, 0.4212, 0.8912), (0.2586, 0.5796, 0.9988),
    (0.1584, 0.7355, 0.9231), (0.0927, 0.8655, 0.7623), (0.1966, 0.9490, 0.5947), (0.4278, 0.9942, 0.3857),
    (0.6436, 0.9900, 0.2336), (0.8047, 0.9245, 0.2046), (0.9330, 0.8124, 0.2267), (0.9931, 0.6741, 0.2035),
    (0.9836, 0.4929, 0.1285), (0.9211, 0.3149, 0.0548), (0.8161, 0.1846, 0.0181), (0.6645, 0.0844, 0.0042),
    (0.4796, 0.0158, 0.0106)], np.float32)
# Where rays are not absorbed: white, which turbo never reaches.
EMPTY_COLOR = (1.0, 1.0, 1.0)
# Rays with less accumulated opacity than this count as empty space.
MIN_OPACITY = 0.5


def turbo(x):
  """Turbo colours of [...] values in [0, 1] (clipped): [..., 3] float32 RGB in [0, 1], dark blue at 0, dark red at
  1."""
  x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
  anchors = np.linspace(0.0, 1.0, len(TURBO_ANCHORS), dtype=np.float32)
  return np.stack([np.interp(x, anchors, TURBO_ANCHORS[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def ray_distance(depth, acc):
  """[...] distance to the surface each ray sees (the composited depth over the opacity that made it), NaN where
  the ray hits nothing (opacity below MIN_OPACITY): the raw depth that eval.py writes as .npy."""
  depth, acc = np.asarray(depth, np.float32), np.asarray(acc, np.float32)
  return np.where(acc >= MIN_OPACITY, depth / np.maximum(acc, 1e-6), np.nan).astype(np.float32)


def shown_values(distance, disparity):
  """[...] the quantity a depth map shows, larger nearer: 1 / distance with `disparity` (unbounded, contracted
  scenes, where distances run out to infinity), else minus the distance. NaN stays NaN."""
  distance = np.asarray(distance, np.float32)
  return 1.0 / np.maximum(distance, 1e-6) if disparity else -distance


def percentile_range(values, percentiles=(1.0, 99.0)):
  """(low, high) percentiles of the finite entries of `values` [...], or None if it has none; low < high (a
  constant image gets a small range around its value)."""
  finite = np.asarray(values, np.float64)
  finite = finite[np.isfinite(finite)]
  if finite.size == 0:
    return None
  low, high = np.percentile(finite, percentiles)
  if high - low <= 1e-6 * max(abs(high), 1.0):
    low, high = low - 0.5, high + 0.5
  return float(low), float(high)


def depth_image(depth, acc, disparity=False, value_range=None):
  """A depth map as a colour image: near dark red through yellow and green to far dark blue, empty space white.

  Args:
    depth: [H, W] composited depth (sum of weights times distance) of a render.
    acc: [H, W] accumulated opacity.
    disparity: show 1 / distance (for contracted scenes), else distance; either way over `value_range`.
    value_range: (low, high) of shown_values to spread over the map; None: the 1st and 99th percentiles of this
      image's valid pixels (a video passes its first frame's range on, so that colours do not flicker).

  Returns:
    ([H, W, 3] uint8 image, the (low, high) used, or None when no pixel is valid).
  """
  values = shown_values(ray_distance(depth, acc), disparity)
  if value_range is None:
    value_range = percentile_range(values)
  valid = np.isfinite(values)
  colors = np.broadcast_to(np.asarray(EMPTY_COLOR, np.float32), values.shape + (3,)).copy()
  if value_range is not None:
    low, high = value_range
    colors[valid] = turbo((values[valid] - low) / (high - low))
  return np.round(colors * 255).astype(np.uint8), value_range
