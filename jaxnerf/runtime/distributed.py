"""Joining a multi-process run (the hosts of a TPU pod or GPU cluster, or processes on one machine) through JAX's
own runtime, jax.distributed, before any other JAX call; and ending every process of it with one line when one of
them fails.

A process that dies leaves the others waiting in a collective, and JAX ends them only after its heartbeat timeout,
with a C++ abort dump. Here a watchdog thread in every process writes a heartbeat to the coordination service's
key-value store and reads the others'; a process whose heartbeat stops for UNRESPONSIVE_S, or that reports an error
(`report_failure`), makes every other one print one line naming the last checkpoint and exit with code 3. When
process 0, which serves the coordination service, dies, JAX's runtime aborts the others from a C++ thread before
Python can act; their stderr goes through stderr_guard.py, which shows one line of the same form instead of the
abort dump.
"""
import atexit
import os
import subprocess
import sys
import threading
import time
import warnings

import jax
from jax._src import distributed as jax_distributed  # the coordination service's client
from jax.experimental import multihost_utils
import numpy as np

from jaxnerf.runtime import stderr_guard
from jaxnerf.runtime.stderr_guard import last_checkpoint_note
from jaxnerf.errors import DistributedError


PEER_FAILURE_EXIT_CODE = 3
HEARTBEAT_S = 1.0
UNRESPONSIVE_S = 20.0  # well below JAX's own heartbeat timeout (JAX_HEARTBEAT_S), which aborts the process
JAX_HEARTBEAT_S = 100
_KEY = "jaxnerf"


def initialize(coordinator_address=None, num_processes=None, process_id=None, auto=False, timeout_s=60,
               workdir=None):
  """Join the run's jax.distributed runtime; a single-process run (no address, not auto) does nothing.

  Args:
    coordinator_address: "host:port" of process 0, which serves the coordination service on that port.
    num_processes: processes in the run; process_id: this one's, in 0..num_processes-1.
    auto: let JAX find all three from the cluster (TPU pods, Slurm, Open MPI).
    timeout_s: how long to wait for every process to join.
    workdir: the run's directory, whose last checkpoint the line of a failed job names.

  Raises:
    DistributedError: for settings that cannot work, found before or after joining. If the processes have not
      all joined within timeout_s (a wrong process count, an unreachable coordinator), the process ends with one
      `error:` line and exit code 2: JAX's own timeout aborts the process with a C++ stack trace instead.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if not auto and all(v is None for v in explicit):
    return
  if not auto and any(v is None for v in explicit):
    raise DistributedError("--coordinator_address, --num_processes and --process_id go together (or use "
                           "--distributed where JAX detects them, as on TPU pods)")
  if not auto and not 0 <= process_id < num_processes:
    raise DistributedError(f"--process_id={process_id}: expected 0 <= process_id < --num_processes={num_processes}")
  where = f"the coordinator at {coordinator_address}" if coordinator_address else "the coordinator"
  count = f"not all of the {num_processes} processes" if num_processes else "not all processes"
  message = (f"{count} joined {where} within {timeout_s} s (--distributed_timeout): start every process "
             "with the same --coordinator_address and --num_processes and its own --process_id, and check that "
             "process 0 is running and reachable at that address")
  # The main thread waits inside JAX's C++ client (which releases the GIL), so a timer thread can end the
  # process before JAX's own, later, timeout aborts it.
  watchdog = threading.Timer(timeout_s, _exit_with_error, (message,))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=timeout_s + 60, heartbeat_timeout_seconds=JAX_HEARTBEAT_S)
    joined = jax.process_count()  # also waits for every process's devices
  except (RuntimeError, ValueError) as e:
    raise DistributedError(f"jax.distributed.initialize failed: {e}") from None
  finally:
    watchdog.cancel()
  if num_processes is not None:
    # Compared on all processes together, so that all of them stop, not only the one that was told wrong.
    told = sorted(set(multihost_utils.process_allgather(np.int32(num_processes)).tolist()))
    if told != [joined]:
      raise DistributedError(f"{joined} processes joined the coordinator at {coordinator_address}, told "
                             f"--num_processes={' or '.join(map(str, told))}; give every process the same, "
                             "right, --num_processes")
  _guard_stderr(workdir)
  _Watchdog.instance = _Watchdog(workdir)
  _Watchdog.instance.start()
  atexit.register(finish)  # runs before JAX's own exit handler, which waits for every process


def _exit_with_error(message):
  # Runs in the timer thread, where sys.exit would end only that thread.
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(2)


def _guard_stderr(workdir):
  """Send this process's stderr (file descriptor 2, C++ included) through stderr_guard.py, a process that
  outlives this one and replaces JAX's abort dump with one line."""
  reader, writer = os.pipe()
  with warnings.catch_warnings():
    # A fork followed at once by exec, which JAX's at-fork warning cannot tell from a bare fork.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    _Watchdog.guard_process = subprocess.Popen([sys.executable, stderr_guard.__file__, workdir or ""],
                                              stdin=reader, stdout=subprocess.DEVNULL, close_fds=True)
  os.close(reader)
  sys.stderr.flush()
  os.dup2(writer, 2)
  os.close(writer)


class _Watchdog(threading.Thread):
  """Heartbeats through the coordination service, and the end of this process when another one fails."""

  instance = None
  guard_process = None  # stderr_guard.py, which this process's stderr goes through

  def __init__(self, workdir):
    super().__init__(name="jaxnerf-watchdog", daemon=True)
    self.client = jax_distributed.global_state.client
    self.index, self.count = jax.process_index(), jax.process_count()
    self.workdir = workdir
    self.lock = threading.Lock()
    self.ending = False  # this process is ending on its own: the watchdog stays silent

  def run(self):
    beats = 0
    last_seen = {}  # process -> (its heartbeat value, when that value was first read)
    unreachable_since = None
    while not self.ending:
      now = time.monotonic()
      try:
        self.client.key_value_set(f"{_KEY}/alive/{self.index}", str(beats), allow_overwrite=True)
        beats += 1
        failed = self.failures()
        if failed:
          self.client.key_value_set(f"{_KEY}/seen/{self.index}", "1", allow_overwrite=True)
          self.stop_job(*failed[0])
        done = {_process_of(key) for key, _ in self.client.key_value_dir_get(f"{_KEY}/done/")}
        for other in set(range(self.count)) - done - {self.index}:
          try:
            value = self.client.key_value_try_get(f"{_KEY}/alive/{other}")
          except Exception:  # not written yet
            value = None
          if last_seen.get(other, (None,))[0] != value:
            last_seen[other] = (value, now)
          elif now - last_seen[other][1] > UNRESPONSIVE_S:
            self.stop_job(other)
        unreachable_since = None
      except Exception:  # the coordination service, on process 0, is gone
        unreachable_since = unreachable_since or now
        if now - unreachable_since > UNRESPONSIVE_S:
          self.stop_job(0)
      time.sleep(HEARTBEAT_S)

  def failures(self):
    """[(process, its last line)] reported by the other processes."""
    reported = self.client.key_value_dir_get(f"{_KEY}/failed/")
    return sorted((_process_of(key), line) for key, line in reported if _process_of(key) != self.index)

  def stop_job(self, index=None, line=None):
    """Print the one line for a job another process (`index`, or an unknown one) left, and end this process."""
    with self.lock:
      if self.ending:
        return
      self.ending = True
    who = f"process {index}" if index is not None else "a process"
    what = f"stopped ({line})" if line else "stopped responding"
    note = last_checkpoint_note(self.workdir)
    fix = "fix that, then rerun" if line and line.startswith("error:") else "rerun"
    sys.stdout.flush()
    # On a line of its own, below a progress bar (the cursor may be at its end).
    print(f"\nerror: {who} of this {self.count}-process job {what}; {note}; {fix} the same command on every "
          "process to resume", file=sys.stderr, flush=True)
    if self.index == 0:
      time.sleep(2 * HEARTBEAT_S)  # the others end first: with process 0, the coordination service goes
    os._exit(PEER_FAILURE_EXIT_CODE)

  def end_quietly(self):
    """Whether this call silenced the watchdog (False: it is already ending the process)."""
    with self.lock:
      if self.ending:
        return False
      self.ending = True
      return True


def _process_of(key):
  return int(key.rsplit("/", 1)[1])


def running():
  """Whether this is a multi-process job, watched by the watchdog."""
  return _Watchdog.instance is not None


def report_failure(line):
  """This process is ending with `line` (printed by the caller): silence the watchdog, tell the other processes,
  and wait a little for them to read it (process 0 serves the store, so its exit would take the line with it)."""
  watchdog = _Watchdog.instance
  if watchdog is None or not watchdog.end_quietly():
    return
  client = watchdog.client
  try:
    client.key_value_set(f"{_KEY}/failed/{watchdog.index}", line.replace("\n", " "), allow_overwrite=True)
    deadline = time.monotonic() + 5 * HEARTBEAT_S
    while time.monotonic() < deadline and len(client.key_value_dir_get(f"{_KEY}/seen/")) < watchdog.count - 1:
      time.sleep(0.1)
  except Exception:  # the others learn it from the missing heartbeats
    pass


def stop_if_another_process_failed(error):
  """After `error` in the main thread of a multi-process job: if another process failed (which breaks the
  collective this one was in), end this process with the watchdog's line; else return."""
  watchdog = _Watchdog.instance
  if watchdog is None:
    return
  deadline = time.monotonic() + 3 * HEARTBEAT_S  # for the other process's report to arrive
  while time.monotonic() < deadline:
    try:
      failed = watchdog.failures()
    except Exception:  # the coordinator, process 0, is gone
      watchdog.stop_job(0)
      return
    if failed:
      watchdog.stop_job(*failed[0])
    time.sleep(0.1)
  text = str(error)
  if any(sign in text for sign in ("Connection reset", "Connection closed", "Broken pipe", "Socket closed",
                                   "heartbeat", "UNAVAILABLE")):
    watchdog.stop_job()


def finish():
  """This process ended normally: the others stop watching its heartbeat."""
  watchdog = _Watchdog.instance
  if watchdog is None or not watchdog.end_quietly():
    return
  try:
    watchdog.client.key_value_set(f"{_KEY}/done/{watchdog.index}", "1", allow_overwrite=True)
  except Exception:  # the coordinator is gone; nobody is left to tell
    pass
