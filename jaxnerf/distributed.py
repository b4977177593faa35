"""Joining a multi-process run (the hosts of a TPU pod or GPU cluster, or processes on one machine) through JAX's
own runtime, jax.distributed, before any other JAX call."""
import os
import sys
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np

from jaxnerf.errors import DistributedError


def initialize(coordinator_address=None, num_processes=None, process_id=None, auto=False, timeout_s=60):
  """Join the run's jax.distributed runtime; a single-process run (no address, not auto) does nothing.

  Args:
    coordinator_address: "host:port" of process 0, which serves the coordination service on that port.
    num_processes: processes in the run; process_id: this one's, in 0..num_processes-1.
    auto: let JAX find all three from the cluster (TPU pods, Slurm, Open MPI).
    timeout_s: how long to wait for every process to join.

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
                               initialization_timeout=timeout_s + 60)
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


def _exit_with_error(message):
  # Runs in the timer thread, where sys.exit would end only that thread.
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(2)
