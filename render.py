"""Render a video along a camera path from the latest checkpoint of a run (colour and depth, mp4 or GIF).

  python render.py                                  # 120-frame orbit of the demo run in runs/demo
  python render.py --config=configs/fern_cpu.py --path=spiral --frames=120 --fps=30
  python render.py --config=configs/demo_fast.py --path=runs/demo_fast/camera_paths/path.json  # from view.py
  python render.py --config=configs/blender.py --config.data.data_dir=PATH/lego --workdir=runs/lego \
      --path=orbit --factor=2 --format=gif

Videos are written to <workdir>/videos/<path>_<step>.mp4 and <path>_<step>_depth.mp4.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

import warnings

from absl import app
from absl import flags

from jaxnerf.run import cli
from jaxnerf.run import workdir
from jaxnerf.run import video as video_lib

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_string("path", "auto", "Camera path: spiral (forward-facing scenes), orbit (inward-facing), test (the "
                    "test views in turn), auto (spiral for NDC scenes, orbit otherwise), or FILE.json, a camera "
                    "path saved by the viewer (docs/viewer.md; its timing replaces --frames and --fps).")
flags.DEFINE_integer("frames", 120, "Number of frames.")
flags.DEFINE_integer("fps", 30, "Frames per second.")
flags.DEFINE_integer("factor", 1, "Render at 1/factor of the training image size.")
flags.DEFINE_string("format", "mp4", "mp4 (H.264) or gif.")
flags.DEFINE_integer("step", None, "Render the checkpoint of this step (default: the latest).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  # ffmpeg runs as a subprocess (fork then exec at once), which is safe; JAX's at-fork warning cannot tell.
  warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
  cli.join_distributed(FLAGS)
  result = cli.run_reporting_user_errors(video_lib.render_video, FLAGS.config, cli.workdir(FLAGS), FLAGS.path,
                                         FLAGS.frames, FLAGS.fps, FLAGS.factor, FLAGS.format, FLAGS.step)
  if workdir.is_lead_process():
    print(f"step {result['step']}: {result['frames']} frames of {result['width']}x{result['height']} written "
          f"to {result['rgb']} and {result['depth']}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
