"""Look at a run in the browser (the `viewer` extra: pip install -e ".[viewer]"): the field rendered from your
camera, the training cameras with their photos, the scene box; outputs colour, depth, opacity (and the proposal's
depth); camera paths placed from the browser and saved for render.py. A newer checkpoint is loaded when training
writes one.

  python view.py --config=configs/demo_fast.py                   # runs/demo_fast, at http://127.0.0.1:8080
  python view.py --config=configs/blender.py --config.data.data_dir=PATH/lego --workdir=runs/lego --port=8090

See docs/viewer.md. Ctrl-C stops it.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

from absl import app
from absl import flags

from jaxnerf.run import cli
from jaxnerf.run import viewer as viewer_lib
from jaxnerf.runtime import interrupts

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_integer("port", 8080, "Port of the web server (the next free one if taken; 0: any free port).")
flags.DEFINE_float("frame_budget", 0.3, "Seconds a preview frame may take while the camera moves; its resolution "
                   "adapts to the measured speed.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  cli.join_distributed(FLAGS)
  interrupts.install(lambda: "viewer stopped")
  if FLAGS.frame_budget <= 0:
    cli.fail(f"--frame_budget: expected a positive number of seconds, got {FLAGS.frame_budget}")
  viewer, reload_newer = cli.run_reporting_user_errors(viewer_lib.open_viewer, FLAGS.config, cli.workdir(FLAGS),
                                                       FLAGS.port, FLAGS.frame_budget)
  print(f"viewer of {cli.workdir(FLAGS)} (step {viewer.renderer.step}) at {viewer.url}; Ctrl-C to stop", flush=True)
  viewer_lib.serve(viewer, reload_newer)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
