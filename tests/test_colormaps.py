"""Depth maps: turbo against matplotlib's, percentile ranges, disparity for contracted scenes, empty space."""
import numpy as np
import pytest
from ml_collections import ConfigDict

from jaxnerf.core import colormaps
from jaxnerf.run import rendering


def map_positions(image):
  """Positions in [0, 1] on the turbo map of the colours of a [..., 3] uint8 image (nearest of 1001 samples)."""
  samples = colormaps.turbo(np.linspace(0.0, 1.0, 1001)) * 255
  distances = np.linalg.norm(image.reshape(-1, 1, 3).astype(np.float64) - samples[None], axis=-1)
  return distances.argmin(axis=1) / 1000.0, distances.min(axis=1)


def test_turbo_matches_matplotlib():
  matplotlib = pytest.importorskip("matplotlib")
  x = np.linspace(0.0, 1.0, 513)
  np.testing.assert_allclose(colormaps.turbo(x), matplotlib.colormaps["turbo"](x)[:, :3], atol=0.035)
  np.testing.assert_allclose(colormaps.turbo([-1.0, 2.0]), colormaps.turbo([0.0, 1.0]))  # clipped


def test_depth_ramp_near_red_far_blue_empty_white():
  distance = np.tile(np.linspace(2.0, 6.0, 50), (10, 1))
  acc = np.ones_like(distance)
  acc[:, :5] = 0.1  # empty: white, and left out of the range
  image, value_range = colormaps.depth_image(distance * acc, acc)
  assert image.shape == (10, 50, 3) and image.dtype == np.uint8
  assert (image[:, :5] == 255).all()
  positions, off_map = map_positions(image[:, 5:])
  assert off_map.max() < 2.0  # every valid pixel is a turbo colour
  positions = positions.reshape(10, 45)
  assert (np.diff(positions, axis=1) <= 1e-9).all()  # farther is lower on the map (bluer)
  assert positions[:, 0].min() > 0.97 and positions[:, -1].max() < 0.03  # the 1st-99th percentiles span it
  np.testing.assert_allclose(value_range, -np.percentile(distance[:, 5:], [99, 1]), rtol=1e-5)
  # A given range is kept (a video's first frame's): a farther scene comes out bluer.
  farther, _ = colormaps.depth_image(distance + 1.0, np.ones_like(distance), value_range=value_range)
  assert map_positions(farther)[0].mean() < map_positions(image[:, 5:])[0].mean()


def test_contracted_scene_depth_spans_the_map_in_disparity(rng):
  """Distances of an unbounded capture: an object at 1-3 and a background out to 1000. Disparity spreads them
  over the whole map; linear distance from near to a far of 1000 (the old greyscale) put nearly all in one end."""
  distance = np.concatenate([rng.uniform(1.0, 3.0, 600), np.exp(rng.uniform(np.log(5.0), np.log(1000.0), 400))])
  distance = rng.permutation(distance).reshape(20, 50)
  out = {"depth": distance, "acc": np.ones_like(distance)}
  image, _ = rendering.depth_to_image(out, ConfigDict({"model": {"contraction": True}}))
  positions, off_map = map_positions(image)
  assert off_map.max() < 2.0
  histogram = np.histogram(positions, bins=10, range=(0.0, 1.0))[0]
  assert (histogram > 0).all() and histogram.max() < 0.5 * positions.size, histogram
  linear_old = (1000.0 - distance) / (1000.0 - 0.1)  # near 1, far 0, as depth was scaled before
  assert np.mean(linear_old > 0.99) > 0.6  # what made the old maps blank white


def test_no_valid_pixel_and_constant_depth():
  image, value_range = colormaps.depth_image(np.zeros((4, 4)), np.zeros((4, 4)))
  assert value_range is None and (image == 255).all()
  image, value_range = colormaps.depth_image(np.full((4, 4), 3.0), np.ones((4, 4)))
  assert value_range[0] < -3.0 < value_range[1]
  assert np.abs(map_positions(image)[0] - 0.5).max() < 0.01
  raw = colormaps.ray_distance(np.array([1.0, 0.2]), np.array([0.5, 0.2]))
  assert raw[0] == pytest.approx(2.0) and np.isnan(raw[1])
