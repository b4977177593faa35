"""Train a NeRF.

  python train.py                                   # the built-in demo scene, into runs/demo
  python train.py --config=configs/blender.py --config.data.data_dir=PATH/lego --workdir=runs/lego
  python train.py --config=configs/demo_fast.py --viewer        # watch it train at http://127.0.0.1:8080

Running the same command again resumes from the latest checkpoint in the workdir.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

from absl import app
from absl import flags

from jaxnerf.run import cli
from jaxnerf.run import train as train_lib

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_bool("viewer", False, "Serve the live viewer (the `viewer` extra, docs/viewer.md) while training: it "
                  "renders between steps with at most 10% of the time, and has pause/resume.")
flags.DEFINE_integer("port", 8080, "Port of --viewer's web server (the next free one if taken; 0: any free port).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  cli.join_distributed(FLAGS)
  cli.run_reporting_user_errors(train_lib.train_and_evaluate, FLAGS.config, cli.workdir(FLAGS),
                                FLAGS.port if FLAGS.viewer else None)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
