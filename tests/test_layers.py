"""The package's layers import downwards only: a module may import its own layer and the layers below it.

Read from the source (every `import` and `from ... import`, at any depth, relative ones resolved), so that an
import inside a function counts as much as one at the top.
"""
import ast
import os

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxnerf")

# Lowest first. "jaxnerf" is the package's own __init__, jaxnerf/errors.py and jaxnerf/storage.py, which
# everything may use.
LAYERS = ("jaxnerf", "core", "nerf", "data", "metrics", "config", "runtime", "run")


def layer_of(module):
  """The layer of a dotted module name inside the package: "jaxnerf.nerf.model" -> "nerf"."""
  parts = module.split(".")
  if len(parts) == 1 or parts[1] in ("errors", "storage"):
    return "jaxnerf"
  if parts[1] not in LAYERS:
    raise AssertionError(f"{module}: not in a layer; add its folder to LAYERS in {__file__}")
  return parts[1]


def package_imports(source, module, is_package):
  """The jaxnerf modules that `source` (the text of `module`) imports, as dotted names."""
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "jaxnerf")
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([base] if base else []))
      if base.split(".")[0] != "jaxnerf":
        continue
      # `from jaxnerf.nerf import model` imports jaxnerf.nerf.model; `from jaxnerf.nerf.model import X` the module.
      found.update(f"{base}.{alias.name}" if os.path.exists(_module_path(f"{base}.{alias.name}")) else base
                   for alias in node.names)
  return found


def _module_path(dotted):
  path = os.path.join(os.path.dirname(PACKAGE_DIR), *dotted.split("."))
  return path + ".py" if not os.path.isdir(path) else path


def package_modules():
  for root, _, files in os.walk(PACKAGE_DIR):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(root, name)
        relative = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
        is_package = name == "__init__.py"
        yield (relative[:-len(".__init__")] if is_package else relative), path, is_package


def layering_violations():
  violations = []
  for module, path, is_package in package_modules():
    with open(path, encoding="utf-8") as f:
      source = f.read()
    rank = LAYERS.index(layer_of(module))
    for imported in sorted(package_imports(source, module, is_package)):
      if LAYERS.index(layer_of(imported)) > rank:
        violations.append(f"{module} ({layer_of(module)}) imports {imported} ({layer_of(imported)})")
  return violations


def test_no_layer_imports_a_higher_one():
  assert layering_violations() == []


def test_the_check_sees_upward_imports_of_every_form():
  modules = {
      "from jaxnerf.run import train": {"jaxnerf.run.train"},
      "from jaxnerf.run.train import TrainState": {"jaxnerf.run.train"},
      "import jaxnerf.runtime.sharding as s": {"jaxnerf.runtime.sharding"},
      "def f():\n  from ..run import cli": {"jaxnerf.run.cli"},
      "from jaxnerf import config as c": {"jaxnerf.config"},
      "import numpy": set(),
  }
  for source, expected in modules.items():
    assert package_imports(source, "jaxnerf.nerf.model", False) == expected, source
  for imported in set().union(*modules.values()):
    assert LAYERS.index(layer_of(imported)) > LAYERS.index("nerf")


@pytest.mark.parametrize("module,layer", [("jaxnerf", "jaxnerf"), ("jaxnerf.errors", "jaxnerf"),
                                          ("jaxnerf.storage", "jaxnerf"),
                                          ("jaxnerf.core.rays", "core"), ("jaxnerf.config", "config"),
                                          ("jaxnerf.run.cli", "run")])
def test_layer_of(module, layer):
  assert layer_of(module) == layer
