"""Evaluate the latest checkpoint of a run: render the test views, write PNGs and eval/metrics.json (PSNR, SSIM, LPIPS).

  python eval.py                                    # the demo run in runs/demo
  python eval.py --config=configs/blender.py --config.data.data_dir=PATH/lego --workdir=runs/lego
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

from absl import app
from absl import flags

from jaxnerf.run import cli
from jaxnerf.run import evaluate as eval_lib
from jaxnerf.run import workdir

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_integer("step", None, "Evaluate the checkpoint of this step, into eval/step_<step>/ (default: the "
                     "latest, into eval/).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  cli.join_distributed(FLAGS)
  result = cli.run_reporting_user_errors(eval_lib.evaluate, FLAGS.config, cli.workdir(FLAGS), FLAGS.step)
  if workdir.is_lead_process():
    lpips_text = f", mean LPIPS ({result['lpips_net']}) {result['lpips']:.4f}" if "lpips" in result else ""
    print(f"step {result['step']}: mean PSNR {result['psnr']:.2f} dB, mean SSIM {result['ssim']:.4f}{lpips_text} "
          f"over {len(result['per_image'])} {result['split']} views")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
