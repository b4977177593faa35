"""Ctrl-C (SIGINT) in the command-line tools: one line on stderr and exit code 130, at once even while the main
thread is inside JAX (compiling or computing, where Python's own KeyboardInterrupt would wait for it to return).

A thread reads the signal from a wakeup file descriptor, so it acts while the main thread is busy in C++. Code that
can stop cleanly (the training loop, which saves a checkpoint first) takes the first Ctrl-C over with `graceful`;
any other Ctrl-C, or a second one, ends the process: files registered with `partial_file` are removed first, so
nothing half-written is left under a final name.
"""
import contextlib
import os
import signal
import socket
import sys
import threading
import time

EXIT_CODE = 130  # the shell's code for a command stopped by SIGINT; it stops `train.py && eval.py`

_lock = threading.Lock()
_graceful_handlers = []  # callables; the last one gets the next Ctrl-C, and returns False to decline it
_partial_files = set()
_before_exit = []  # callables(message) run before the process ends (telling the other processes of a job)
_describe = [lambda: "stopped"]
_counts = {"thread": 0, "python": 0}  # Ctrl-Cs seen by the thread and by the Python-level handler
_installed = False


class Interrupted(KeyboardInterrupt):
  """Ctrl-C, after the interrupted work stopped cleanly; str() says what was kept."""


def install(describe):
  """Route Ctrl-C through this module for the rest of the process; call once, from the main thread.

  Args:
    describe: () -> str, what an interruption leaves behind (e.g. the last checkpoint), for the one line printed.
  """
  global _installed
  _describe[0] = describe
  if _installed:
    return
  reader, writer = socket.socketpair()
  writer.setblocking(False)
  # The C-level handler writes the signal number to `writer` at once, for the thread; the Python-level handler runs
  # only when the main thread returns to Python, and acts only if the thread did not (another library, such as an
  # event loop, may have taken the wakeup fd over).
  signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
  signal.signal(signal.SIGINT, _python_level_handler)
  threading.Thread(target=_watch, args=(reader, writer), name="ctrl-c", daemon=True).start()
  _installed = True


def _watch(reader, writer):
  del writer  # kept referenced while the thread lives: the wakeup fd must stay open
  while True:
    data = reader.recv(64)
    for _ in range(data.count(signal.SIGINT)):
      _counts["thread"] += 1
      _on_interrupt()


def _python_level_handler(signum, frame):
  del signum, frame
  _counts["python"] += 1
  deadline = time.monotonic() + 0.5
  while _counts["thread"] < _counts["python"] and time.monotonic() < deadline:
    time.sleep(0.01)
  if _counts["thread"] < _counts["python"]:  # the thread never heard of it
    _counts["thread"] += 1
    _on_interrupt()


def _on_interrupt():
  with _lock:
    handler = _graceful_handlers[-1] if _graceful_handlers else None
  if handler is not None and handler():
    return
  abort(f"interrupted (Ctrl-C): {_describe[0]()}")


def abort(message, exit_code=EXIT_CODE):
  """Remove the registered partial files, run the before-exit hooks, print `message` and end the process now
  (without Python's exit handlers: a multi-process job's shutdown barrier would wait for the others)."""
  with _lock:
    partial = list(_partial_files)
    hooks = list(_before_exit)
  for path in partial:
    with contextlib.suppress(OSError):
      os.remove(path)
  for hook in hooks:
    with contextlib.suppress(Exception):
      hook(message)
  sys.stdout.flush()
  print("\n" + message, file=sys.stderr, flush=True)  # on a line of its own, below a progress bar or ^C
  os._exit(exit_code)


@contextlib.contextmanager
def graceful(handler):
  """Within the block, Ctrl-C calls handler() (in another thread, or in the main thread where `install` was not
  called) instead of ending the process; a False return declines it (the process ends as without the block)."""
  previous = None
  if not _installed and threading.current_thread() is threading.main_thread():
    def python_level(signum, frame):
      del signum, frame
      if not handler():
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGINT, python_level)
  with _lock:
    _graceful_handlers.append(handler)
  try:
    yield
  finally:
    with _lock:
      _graceful_handlers.remove(handler)
    if previous is not None:
      signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def partial_file(path):
  """A file being written under a temporary name: removed if the process is interrupted while in the block."""
  with _lock:
    _partial_files.add(path)
  try:
    yield path
  finally:
    with _lock:
      _partial_files.discard(path)


def before_exit(hook):
  """Run hook(message) before an interruption ends the process."""
  with _lock:
    _before_exit.append(hook)
