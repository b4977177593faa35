"""A seeded mutator of JSON scene files, for fuzzing the scene loaders.

Each scene format is one `SceneFormat` in `FORMATS`: how to write a small valid scene (4x4 PNGs) and how to load
it. `mutate` changes a parsed JSON document at random places: wrong types, missing and extra keys, NaN, infinite
and huge numbers, nested garbage, empty strings, absolute and `..` paths, control characters, truncated lists.
`corrupt_text` damages the serialised text instead (truncation, invalid UTF-8, deep nesting).
"""
import copy
import dataclasses
import json
import math
import os
from typing import Callable

import numpy as np
from PIL import Image

from jaxnerf.data import blender
from jaxnerf.data import transforms

IMAGE_SIZE = 4


def write_png(path, rng):
  """A random IMAGE_SIZE x IMAGE_SIZE RGBA PNG at `path`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 4), dtype=np.uint8)
  Image.fromarray(pixels, "RGBA").save(path)


def random_pose(rng):
  """A 4x4 camera-to-world matrix (rotation, translation) as nested lists."""
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  if np.linalg.det(q) < 0:
    q[:, 0] = -q[:, 0]
  pose = np.eye(4)
  pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3) * 4
  return pose.tolist()


def write_blender_scene(root, rng, num_frames=3, json_name="transforms_train.json"):
  """A valid Blender scene in `root` (split "train"); returns (path of the JSON, its parsed content). Named
  transforms.json, it is also a valid Instant-NGP capture."""
  frames = []
  for i in range(num_frames):
    write_png(os.path.join(root, "train", f"r_{i}.png"), rng)
    frames.append({"file_path": f"./train/r_{i}", "rotation": 0.012566, "transform_matrix": random_pose(rng)})
  document = {"camera_angle_x": 0.6911112070083618, "frames": frames}
  path = os.path.join(root, json_name)
  with open(path, "w") as f:
    json.dump(document, f)
  return path, document


@dataclasses.dataclass(frozen=True)
class SceneFormat:
  name: str
  write: Callable  # (root folder, numpy Generator) -> (path of the JSON file, its parsed document)
  load: Callable  # (root folder) -> Views; raises DataError


FORMATS = [
    SceneFormat("blender", write_blender_scene, lambda root: blender.load_split(root, "train")),
    SceneFormat("transforms", lambda root, rng: write_blender_scene(root, rng, json_name="transforms.json"),
                lambda root: transforms.load_split(root, "train", hold=100)),
]

# Values of the wrong type or range, to put where anything else was.
GARBAGE = [None, True, False, 0, -1, 1, 2**64, 10**400, 1e308, -1e308, 1e-320, math.nan, math.inf, -math.inf, 0.5,
           "", " ", "abc", "1.0", "nan", "\x00", "\n", "a" * 5000, [], [[]], [None], [1, 2, 3], {}, {"a": 1},
           [[0.0] * 4] * 4, [[math.nan] * 4] * 4, [[1e308] * 4] * 4, [[[[[[[[[[1]]]]]]]]]], {"frames": []}]
PATHS = ["/etc/passwd", "/", "/tmp", "..", "../", "../../train/r_0", "./../train/r_0", "train/../../r_0", ".", "./",
         "train", "train/", "./train/r_0.png", "./train/r_0.jpg", "./train/missing", "./transforms_train.json",
         "./train/r_0\x00", "./train/r_0\n", "~/r_0", "train//r_0", "C:\\train\\r_0", "\\\\server\\r_0",
         "./train/r_0" + "/x" * 2000, "\u00e9\u00e8/\u4e2d"]


def _locations(node, path=()):
  """Every (path, value) in a JSON document, the root included."""
  yield path, node
  if isinstance(node, dict):
    for key, value in node.items():
      yield from _locations(value, path + (key,))
  elif isinstance(node, list):
    for index, value in enumerate(node):
      yield from _locations(value, path + (index,))


def _parent(document, path):
  node = document
  for key in path[:-1]:
    node = node[key]
  return node


def _random_garbage(rng, depth=0):
  choice = rng.integers(0, 4 if depth < 4 else 1)
  if choice == 0:
    return copy.deepcopy(GARBAGE[rng.integers(len(GARBAGE))])
  if choice == 1:
    return [_random_garbage(rng, depth + 1) for _ in range(rng.integers(0, 5))]
  if choice == 2:
    return {str(rng.integers(100)): _random_garbage(rng, depth + 1) for _ in range(rng.integers(0, 4))}
  return float(rng.normal() * 10.0 ** rng.integers(-5, 40))


def _mutate_once(document, rng):
  """One mutation, of a kind that applies to the value at a random place; returns the (possibly new) document."""
  locations = list(_locations(document))
  path, value = locations[rng.integers(len(locations))]
  if not path:  # the root itself
    return _random_garbage(rng)
  parent, key = _parent(document, path), path[-1]
  is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
  mutations = {
      "other type or range": lambda: _random_garbage(rng),
      "missing": None,
      "wrapped": lambda: [value] if rng.random() < 0.5 else {"value": value},
      "empty string": lambda: "",
  }
  if isinstance(parent, dict):
    mutations["extra key"] = None
  if isinstance(value, str) or key == "file_path":
    mutations["bad path"] = lambda: PATHS[rng.integers(len(PATHS))]
  if is_number:
    mutations["bad number"] = lambda: [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400, 0, -value,
                                       value * 1e30, value + 4.0][rng.integers(10)]
  if isinstance(value, list):
    mutations["other length"] = lambda: value[:rng.integers(len(value) + 1)] if rng.random() < 0.5 else \
        value + value[:1]
  kind = list(mutations)[rng.integers(len(mutations))]
  if kind == "missing":
    del parent[key]
  elif kind == "extra key":
    parent[["extra", "file_path", "transform_matrix", "camera_angle_x", "frames", ""][rng.integers(6)]] = \
        _random_garbage(rng)
  else:
    parent[key] = mutations[kind]()
  return document


def mutate(document, rng):
  """A copy of `document` with 1 to 3 random mutations."""
  document = copy.deepcopy(document)
  for _ in range(rng.integers(1, 4)):
    document = _mutate_once(document, rng)
  return document


def corrupt_text(text, rng):
  """`text` (a serialised document) damaged as text: cut, invalid UTF-8, or nested very deeply; returns bytes."""
  data = text.encode("utf-8")
  kind = rng.integers(0, 4)
  if kind == 0:
    return data[:rng.integers(len(data))]
  if kind == 1:
    at = rng.integers(len(data))
    return data[:at] + bytes([0xff, 0xfe, 0xc3]) + data[at:]
  if kind == 2:
    return b"[" * 100000 + b"]" * 100000
  return b""


def dumps(document):
  """JSON text of a mutated document (NaN and infinities as JSON's usual extensions; huge ints exactly)."""
  return json.dumps(document, allow_nan=True)
