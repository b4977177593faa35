"""Export the scene of a trained run as a coloured mesh (PLY or OBJ) or point cloud (PLY), in the input's frame.

  python export.py --what=mesh                      # the demo run in runs/demo
  python export.py --config=configs/demo_fast.py --what=mesh --resolution=256 --threshold=10
  python export.py --config=configs/demo_fast.py --what=pointcloud --num_points=200000
  python export.py --config=configs/blender.py --config.data.data_dir=PATH/lego --workdir=runs/lego \
      --what=mesh --output=lego.obj

Files are written to <workdir>/export/<what>_<step>.<format> unless --output is given.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

from absl import app
from absl import flags

from jaxnerf.run import cli
from jaxnerf.run import export as export_lib
from jaxnerf.run import geometry_cleanup
from jaxnerf.run import workdir

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_string("what", "mesh", "mesh (marching cubes on the density) or pointcloud (rendered depth of the "
                    "training views).")
flags.DEFINE_string("output", None, "File to write (default: <workdir>/export/<what>_<step>.<format>).")
flags.DEFINE_string("format", "", "ply or obj (mesh only); default: the extension of --output, else ply.")
flags.DEFINE_integer("resolution", 256, "Mesh: density grid points along the scene box's longest side.")
flags.DEFINE_float("threshold", 10.0, "Mesh: the surface's volume density (per unit length of the scene).")
flags.DEFINE_float("min_opacity", 0.95, "Point cloud: keep pixels rendered at least this opaque.")
flags.DEFINE_integer("num_points", 1_000_000, "Point cloud: a uniform random sample of this many points (0: all).")
flags.DEFINE_integer("stride", 1, "Point cloud: render every stride-th training view.")
flags.DEFINE_integer("factor", 1, "Point cloud: render at 1/factor of the training image size.")
flags.DEFINE_integer("step", None, "Export the checkpoint of this step (default: the latest).")
flags.DEFINE_bool("cull", True, "Keep only what some training camera sees as surface (no floaters where no camera "
                  "looks, or where the cameras or their photos' alpha show empty space).")
flags.DEFINE_integer("cull_stride", 4, "Mesh culling: use every cull_stride-th training view.")
flags.DEFINE_integer("cull_size", 128, "Mesh culling: render those views with their long side near this many pixels.")
flags.DEFINE_integer("components", 0, "Mesh: keep only this many largest connected pieces (0: all).")
flags.DEFINE_bool("in_box", True, "Point cloud: keep only points inside the scene box of a bounded field.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  cli.join_distributed(FLAGS)
  result = cli.run_reporting_user_errors(
      export_lib.export, FLAGS.config, cli.workdir(FLAGS), FLAGS.what, FLAGS.output, FLAGS.format, FLAGS.resolution,
      FLAGS.threshold, FLAGS.min_opacity, FLAGS.num_points, FLAGS.stride, FLAGS.factor, FLAGS.step,
      geometry_cleanup.Cleanup(FLAGS.cull, FLAGS.cull_stride, FLAGS.cull_size, FLAGS.components, FLAGS.in_box))
  if workdir.is_lead_process():
    size = f"{result['vertices']} vertices, {result['faces']} faces" if FLAGS.what == "mesh" else \
        f"{result['points']} points"
    print(f"step {result['step']}: {FLAGS.what} of {size} written to {result['path']}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
