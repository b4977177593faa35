"""What train.py and eval.py share: flags, the default workdir, and turning user mistakes into one line."""
import os
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxnerf import config as config_lib
from jaxnerf.errors import TrainingDivergedError
from jaxnerf.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def fail(message):
  """End the program with one line on stderr and exit code 2."""
  print(f"error: {message}", file=sys.stderr)
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


def run_reporting_user_errors(fn, *args):
  """Call fn; a mistake in the user's data, config or workdir, or a diverged run, ends the program with one line
  and exit code 2."""
  try:
    return fn(*args)
  except (UserError, TrainingDivergedError) as e:
    fail(str(e))
