"""The entry points' restart with glibc malloc tunables (jaxnerf/host_memory.py)."""
import json
import os
import platform
import subprocess
import sys

import pytest

from jaxnerf.runtime import host_memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = """
import json, os, sys
from jaxnerf.runtime import host_memory
print("started", flush=True)
host_memory.restart_with_malloc_tunables()
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


needs_tunables = pytest.mark.skipif(not host_memory.malloc_tunables(), reason="needs glibc >= 2.26")


@needs_tunables
def test_restarts_once_with_the_tunables_and_the_same_arguments(tmp_path):
  starts, seen = run(tmp_path, None)
  assert starts == 2
  assert seen == {"tunables": ":".join(host_memory.malloc_tunables()), "argv": ["--config.x=1", "a b"]}
  assert "glibc.malloc.mmap_max=0" in seen["tunables"] and "glibc.malloc.arena_max=1" in seen["tunables"]


@needs_tunables
def test_huge_pages_where_available(tmp_path):
  """Asked for on glibc 2.35 or later with transparent huge pages not switched off (read here independently of
  host_memory: the C library's version from platform, the kernel's switch from /sys)."""
  libc, version = platform.libc_ver()
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      thp = "[never]" not in f.read()
  except OSError:
    thp = False
  expected = libc == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 35) and thp
  assert (host_memory.HUGE_PAGES in run(tmp_path, None)[1]["tunables"]) == expected


@needs_tunables
def test_adds_to_other_tunables(tmp_path):
  starts, seen = run(tmp_path, "glibc.pthread.rseq=1")
  assert starts == 2 and seen["tunables"] == ":".join(("glibc.pthread.rseq=1", *host_memory.malloc_tunables()))


def test_leaves_a_users_malloc_settings_alone(tmp_path):
  for users in ("glibc.malloc.hugetlb=0", "glibc.pthread.rseq=1:glibc.malloc.arena_max=4"):
    starts, seen = run(tmp_path, users)
    assert starts == 1 and seen["tunables"] == users


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_resident_memory_sees_touched_pages():
  import numpy as np
  current, peak = host_memory.resident_memory()
  assert 0 < current <= peak
  block = np.ones(256 * 2**20, np.uint8)  # touched: resident
  grown, grown_peak = host_memory.resident_memory()
  assert grown - current >= 200 * 2**20 and grown_peak >= grown
  del block
