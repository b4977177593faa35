"""What train.py, eval.py and render.py share: flags, the default workdir, and turning user mistakes, Ctrl-C and a
failed process of a multi-process job into one line."""
# Ctrl-C from here on prints one line instead of a traceback, even while the imports below (JAX's) are running.
from jaxnerf.runtime import interrupts

interrupts.install(lambda: "stopped before anything was written")

import os
import sys
import traceback

from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxnerf import config as config_lib
from jaxnerf.runtime import distributed
from jaxnerf.errors import TrainingDivergedError
from jaxnerf.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "demo.py")


def define_flags(argv=None):
  """Define --config and --workdir. Config overrides in argv (default sys.argv) are checked against the schema
  first: ml_collections reads them as the flag is defined, and fails on an unknown field with a traceback."""
  check_overrides(sys.argv if argv is None else argv)
  config_flags.DEFINE_config_file(
      "config", DEFAULT_CONFIG, "Config file; override any field with --config.group.field=value.",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory for checkpoints, logs and renders "
                      "(default: runs/<config file name> under the current directory).")
  define_distributed_flags()


def define_distributed_flags():
  """Flags of a multi-process run, each defaulting to an environment variable JAXNERF_<FLAG NAME>."""
  env = lambda name: os.environ.get("JAXNERF_" + name.upper())
  flags.DEFINE_string("coordinator_address", env("coordinator_address"),
                      "host:port of process 0 in a multi-process run (process 0 listens on that port).")
  flags.DEFINE_integer("num_processes", env("num_processes"), "Number of processes in a multi-process run.")
  flags.DEFINE_integer("process_id", env("process_id"), "This process's id, 0..num_processes-1.")
  flags.DEFINE_bool("distributed", env("distributed") or False,
                    "Multi-process run with JAX's detection of coordinator, count and id (TPU pods, Slurm, "
                    "Open MPI) instead of the three flags above.")
  flags.DEFINE_integer("distributed_timeout", env("distributed_timeout") or 60,
                       "Seconds to wait for every process of a multi-process run to join before failing.")


def join_distributed(flag_values):
  """Join the multi-process run the flags describe, if any; call before anything else uses JAX."""
  run_dir = workdir(flag_values)
  interrupts.install(lambda: f"stopped; {distributed.last_checkpoint_note(run_dir)}; run the same command to "
                     "continue")
  interrupts.before_exit(distributed.report_failure)
  run_reporting_user_errors(
      distributed.initialize, flag_values.coordinator_address, flag_values.num_processes, flag_values.process_id,
      flag_values.distributed, flag_values.distributed_timeout, workdir=run_dir)


def fail(message):
  """End the program with one line on stderr and exit code 2 (in a multi-process job, telling the others)."""
  line = f"error: {message}"
  print(line, file=sys.stderr, flush=True)
  if distributed.running():
    distributed.report_failure(line)
    sys.stdout.flush()
    os._exit(2)  # JAX's exit handler would wait for the other processes
  sys.exit(2)


def check_overrides(argv):
  schema = config_lib.base_config()
  for arg in argv[1:]:
    if arg.startswith("--config."):
      path = arg[len("--config."):].split("=", 1)[0]
      if not config_lib.has_field(schema, path):
        fail(f"--config.{path}: no such config field (see jaxnerf/config.py for the schema)")


def parse_flags(argv):
  """absl flag parsing that reports a bad flag or config value as one line, without a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))


def quiet_library_logs():
  """Keep the terminal for the progress bar: libraries (orbax) log every save at INFO."""
  logging.set_verbosity(logging.WARNING)


def workdir(flag_values):
  if flag_values.workdir:
    return flag_values.workdir
  name = os.path.splitext(os.path.basename(config_flags.get_config_filename(flag_values["config"])))[0]
  return os.path.join("runs", name)


def run_reporting_user_errors(fn, *args, **kwargs):
  """Call fn; a mistake in the user's data, config or workdir, or a diverged run, ends the program with one line
  and exit code 2; Ctrl-C after training saved, with its line and exit code 130; another process of the job
  failing, with one line and exit code 3."""
  try:
    return fn(*args, **kwargs)
  except interrupts.Interrupted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(interrupts.EXIT_CODE)
  except (UserError, TrainingDivergedError) as e:
    fail(str(e))
  except Exception as e:
    if not distributed.running():
      raise
    distributed.stop_if_another_process_failed(e)
    # This process's own failure: show it, and tell the others, which would wait for it.
    traceback.print_exc()
    distributed.report_failure(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
