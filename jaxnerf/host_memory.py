"""Transparent huge pages for host memory, asked for before JAX starts.

On CPU, XLA allocates a step's buffers (hundreds of MB for a fast-mode step of 8192 rays) afresh every step. glibc's
malloc serves allocations that large with new mmaps, which the kernel faults in 4 KiB at a time: on the 2-core CPU
a blender_fast step took 350k page faults and spent 40% of its time in the kernel. With glibc's
`glibc.malloc.hugetlb=1` tunable malloc asks for transparent huge pages, the faults fall to about 5k per step and
the step runs 1.33x faster (benchmarks/host_memory.py). Tunables are read when a process starts, so the entry
points restart themselves with it; a GLIBC_TUNABLES that already names glibc.malloc.hugetlb (for example =0, to
opt out) is left alone.
"""
import os
import sys

HUGE_PAGES = "glibc.malloc.hugetlb=1"


def huge_pages_available():
  """Whether this process runs on glibc 2.35 or later (the first with the tunable) with transparent huge pages
  not switched off."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
  except (AttributeError, ValueError, OSError):  # not glibc, or no confstr
    return False
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      if "[never]" in f.read():
        return False
  except OSError:
    return False
  return name == "glibc" and tuple(int(part) for part in version.split(".")[:2]) >= (2, 35)


def restart_with_huge_pages():
  """Replace this process with the same command line under GLIBC_TUNABLES with HUGE_PAGES added, unless it is
  there already (or any glibc.malloc.hugetlb setting is) or huge pages are unavailable. Call it first thing in a
  program's `__main__`, before JAX is imported."""
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if "glibc.malloc.hugetlb" in tunables or not huge_pages_available():
    return
  os.environ["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES}" if tunables else HUGE_PAGES
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
