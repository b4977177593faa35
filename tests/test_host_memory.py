"""The entry points' restart with transparent huge pages (jaxnerf/host_memory.py)."""
import json
import os
import subprocess
import sys

import pytest

from jaxnerf import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = """
import json, os, sys
from jaxnerf import host_memory
print("started", flush=True)
host_memory.restart_with_huge_pages()
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"), "argv": sys.argv[1:]}))
"""


def run(tmp_path, env_tunables):
  script = tmp_path / "program.py"
  script.write_text(PROGRAM)
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  env["PYTHONPATH"] = REPO
  if env_tunables is not None:
    env["GLIBC_TUNABLES"] = env_tunables
  out = subprocess.run([sys.executable, "-u", str(script), "--config.x=1", "a b"], env=env, check=True,
                       capture_output=True, text=True).stdout.splitlines()
  return out.count("started"), json.loads(out[-1])


needs_huge_pages = pytest.mark.skipif(not host_memory.huge_pages_available(),
                                      reason="needs glibc >= 2.35 and transparent huge pages")


@needs_huge_pages
def test_restarts_once_with_huge_pages_and_the_same_arguments(tmp_path):
  starts, seen = run(tmp_path, None)
  assert starts == 2
  assert seen == {"tunables": "glibc.malloc.hugetlb=1", "argv": ["--config.x=1", "a b"]}


@needs_huge_pages
def test_adds_to_other_tunables(tmp_path):
  starts, seen = run(tmp_path, "glibc.malloc.arena_max=2")
  assert starts == 2 and seen["tunables"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_leaves_a_users_hugetlb_setting_alone(tmp_path):
  starts, seen = run(tmp_path, "glibc.malloc.hugetlb=0")
  assert starts == 1 and seen["tunables"] == "glibc.malloc.hugetlb=0"
