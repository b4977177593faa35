"""glibc malloc settings for host memory, asked for before JAX starts.

On CPU, XLA allocates a step's buffers (hundreds of MB for a fast-mode step of 8192 rays) afresh every step, and
glibc's malloc serves allocations that large with fresh mmaps (unmapped again when freed), which the kernel zeroes
and faults in at every step: a blender_fast step of 8192 rays (every sample evaluated) took 630k page faults and
1.3 s of kernel CPU with glibc's defaults, 3.0 s in all. These tunables keep that memory in the process:
- glibc.malloc.hugetlb=1 (glibc 2.35 or later, with transparent huge pages on): malloc asks for huge pages, 2 MiB
  per fault instead of 4 KiB (7k faults, 2.3 s per step);
- glibc.malloc.mmap_max=0, arena_max=1 and a trim threshold of 1 TiB: every allocation comes from one heap that keeps
  freed memory, so a step reuses the pages of the one before (12 faults, 1.9 s per step). The heap keeps its
  high-water mark, so peak memory can be higher (a 2-hour lego run: 9.6 GiB against 4.8 GiB with huge pages only).
benchmarks/host_memory.py measures them. Tunables are read when a process starts, so the entry points restart
themselves with them. A GLIBC_TUNABLES that already sets any glibc.malloc tunable (glibc.malloc.hugetlb=0, say, to
opt out) is left alone.
"""
import os
import sys

HEAP = ("glibc.malloc.mmap_max=0", "glibc.malloc.arena_max=1", f"glibc.malloc.trim_threshold={2**40}")
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def glibc_version():
  """(major, minor) of the C library when it is glibc, else None."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
  except (AttributeError, ValueError, OSError):  # not glibc, or no confstr
    return None
  return tuple(int(part) for part in version.split(".")[:2]) if name == "glibc" else None


def huge_pages_available():
  """Whether this process runs on glibc 2.35 or later (the first with the hugetlb tunable) with transparent huge
  pages not switched off."""
  version = glibc_version()
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      if "[never]" in f.read():
        return False
  except OSError:
    return False
  return version is not None and version >= (2, 35)


def malloc_tunables():
  """The tunables the entry points run under on this machine, or () where glibc has none of them."""
  version = glibc_version()
  if version is None or version < (2, 26):  # tunables came with glibc 2.26
    return ()
  return HEAP + ((HUGE_PAGES,) if huge_pages_available() else ())


def restart_with_malloc_tunables():
  """Replace this process with the same command line under GLIBC_TUNABLES with malloc_tunables() added, unless
  GLIBC_TUNABLES already sets a glibc.malloc tunable or glibc has none of them. Call it first thing in a program's
  `__main__`, before JAX is imported."""
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  wanted = malloc_tunables()
  if "glibc.malloc." in tunables or not wanted:
    return
  os.environ["GLIBC_TUNABLES"] = ":".join(([tunables] if tunables else []) + list(wanted))
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def resident_memory():
  """(current, peak) resident memory of this process in bytes, from /proc/self/status (VmRSS, VmHWM), or None
  where that file is absent (not Linux)."""
  try:
    with open("/proc/self/status") as f:
      fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
  except OSError:
    return None
  kib = lambda name: int(fields[name].split()[0]) * 1024
  return kib("VmRSS"), kib("VmHWM")
