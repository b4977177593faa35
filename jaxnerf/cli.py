"""What train.py and eval.py share: flags, the default workdir, and turning user mistakes into one line."""
import os
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxnerf.data.blender import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "demo.py")


def define_flags():
  config_flags.DEFINE_config_file(
      "config", DEFAULT_CONFIG, "Config file; override any field with --config.group.field=value.",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory for checkpoints, logs and renders "
                      "(default: runs/<config file name> under the current directory).")


def quiet_library_logs():
  """Keep the terminal for the progress bar: libraries (orbax) log every save at INFO."""
  logging.set_verbosity(logging.WARNING)


def workdir(flag_values):
  if flag_values.workdir:
    return flag_values.workdir
  name = os.path.splitext(os.path.basename(config_flags.get_config_filename(flag_values["config"])))[0]
  return os.path.join("runs", name)


def run_reporting_user_errors(fn, *args):
  """Call fn; a mistake in the user's data or request ends the program with one line and exit code 2."""
  from jaxnerf.eval_lib import NoCheckpointError
  try:
    return fn(*args)
  except (DataError, NoCheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
