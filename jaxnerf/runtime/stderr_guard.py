"""The stderr of one process of a multi-process job, passed through a separate process that outlives it.

When process 0 of a job (which serves JAX's coordination service) dies, JAX's runtime in every other process
aborts at once from a C++ thread: a fatal log line, a C++ stack and Python's thread dump, with no way for Python
code to run first. This filter holds back the runtime's log lines (`E1125 04:15:33.943 123 file.cc:289] ...`) and
what follows them for a few seconds; if the process then ends in such an abort, it prints one line instead, and if
it ends with its own `error:` line, that line alone. Anything else is passed through unchanged.

  python jaxnerf/stderr_guard.py WORKDIR  <  the process's stderr

It imports nothing of jaxnerf or JAX, so that it starts at once.
"""
import os
import re
import select
import signal
import sys
import time

RUNTIME_LOG = re.compile(rb"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
ABORT_SIGNS = (b"Check failure stack trace", b"Fatal Python error", b"terminate called", b"Terminating process")
HOLD_S = 10.0  # a runtime log line that no abort follows within this time is shown after all


def last_checkpoint_note(workdir):
  """'the last checkpoint in DIR is step N', or that there is none yet (complete checkpoints only: on local disk
  orbax renames a save to its step number when it is complete, on gs:// it adds commit_success.txt)."""
  if not workdir:
    return "see the workdir for the last checkpoint"
  steps = [int(name) for name in _checkpoint_names(workdir) if name.isdigit()]
  if not steps:
    return f"there is no checkpoint in {workdir} yet"
  return f"the last checkpoint in {workdir} is step {max(steps)}"


def _checkpoint_names(workdir):
  """The names in workdir/checkpoints ([] if there is none or it cannot be listed), on gs:// only those of
  complete checkpoints."""
  if "://" in workdir:  # object storage; etils is imported only then, so that this process starts at once
    from etils import epath
    try:
      return [child.name for child in (epath.Path(workdir) / "checkpoints").iterdir()
              if (child / "commit_success.txt").exists()]
    except OSError:
      return []
  directory = os.path.join(workdir, "checkpoints")
  return os.listdir(directory) if os.path.isdir(directory) else []


def filter_stream(source, sink, workdir):
  """Copy the file descriptor `source` to the binary stream `sink` until end of file, as described above."""
  pending, held, held_since = b"", [], None
  line_open = [False]  # whether the last text written ends without a newline (a progress bar)

  def write(data):
    if data:
      sink.write(data)
      line_open[0] = not data.endswith(b"\n")

  def release():
    write(b"".join(line + b"\n" for line in held))
    held.clear()

  while True:
    ready, _, _ = select.select([source], [], [], 1.0)
    chunk = os.read(source, 65536) if ready else None
    if chunk == b"":
      break
    if chunk:
      pending += chunk
      *lines, pending = pending.split(b"\n")
      for line in lines:
        log = None if held else RUNTIME_LOG.search(line)
        if log:  # what precedes it on the line (a progress bar without its newline) is shown
          write(line[:log.start()] + (b"\n" if log.start() else b""))
          line = line[log.start():]
        if held or log:
          held_since = held_since or time.monotonic()
          held.append(line)
        else:
          write(line + b"\n")
      if not held and b"\r" in pending:  # a progress bar, redrawn in place without a newline
        write(pending)
        pending = b""
    if held and time.monotonic() - held_since > HOLD_S:
      release()
      held_since = None
    sink.flush()
  if pending:
    held.append(pending)
  own_lines = [line for line in held if line.lstrip(b"\r").startswith((b"error: ", b"interrupted"))]
  newline = b"\n" if line_open[0] else b""
  if own_lines:
    write(newline + b"".join(line.lstrip(b"\r") + b"\n" for line in own_lines))
  elif any(sign in line for line in held for sign in ABORT_SIGNS):
    write(newline + f"error: a process of this job stopped responding (JAX's runtime ended this one); "
          f"{last_checkpoint_note(workdir)}; rerun the same command on every process to resume\n".encode())
  else:
    release()
  sink.flush()


if __name__ == "__main__":
  # Ctrl-C and SIGTERM are for the process whose stderr this is; this one ends when that stderr closes.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  filter_stream(sys.stdin.fileno(), sys.stderr.buffer, sys.argv[1] if len(sys.argv) > 1 else "")
