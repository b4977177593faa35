"""Evaluation: render the test views from the latest checkpoint, write PNGs and metrics.json."""
import contextlib
import json
import os

import flax
import jax
import numpy as np
from PIL import Image

from jaxnerf.run import checkpoints
from jaxnerf import config as config_lib
from jaxnerf.runtime import interrupts
from jaxnerf.metrics import lpips as lpips_lib
from jaxnerf.metrics import quality as metrics_lib
from jaxnerf.run import rendering as render
from jaxnerf.run import train as train_lib
from jaxnerf.data import loaders
from jaxnerf.errors import WorkdirError


def restore_trained(config, workdir, step=None):
  """The model of `config` (resolved by loaders.with_scene_bounds) and the latest training state in workdir (or
  the one saved at `step`), with an occupancy grid computed from the field if renders skip empty space and the
  checkpoint has none. Data settings that differ from those the run trained with are printed as notes.

  Raises WorkdirError if workdir holds no checkpoint, or a run or checkpoint of another model.
  """
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise WorkdirError(f"{workdir}: no checkpoint to render (train first, with the same --workdir)")
  train_lib.prepare_workdir(config, workdir)
  if train_lib.is_lead_process():
    for field, here, there in data_differences(config, workdir):
      print(f"note: config.{field} is {here!r} here, {there!r} in the run's config.json", flush=True)
  model = train_lib.build_model(config)
  template = train_lib.create_train_state(config, model, train_lib.make_optimizer(config.train))
  with checkpoints.manager(os.path.join(workdir, "checkpoints"), read_only=True) as mngr:
    state = checkpoints.restore_latest(mngr, template, step)
  if state is None:
    raise WorkdirError(f"{workdir}: no checkpoint to render (train first, with the same --workdir)")
  return model, train_lib.with_occupancy_grid(model, config, state)


def data_differences(config, workdir):
  """(field, value here, value in workdir/config.json) for each data setting of the resolved `config` that differs
  from the one the run in workdir trained with (not data.data_dir: a scene may move); [] without a config.json."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      there = flax.traverse_util.flatten_dict(json.load(f)["data"], sep=".")
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return []
  here = flax.traverse_util.flatten_dict(json.loads(config.data.to_json_best_effort()), sep=".")
  return [(f"data.{k}", here[k], there[k]) for k in sorted(here)
          if k != "data_dir" and k in there and here[k] != there[k]]


def evaluate(config, workdir, step=None):
  """Render config.eval.split (every config.eval.stride-th view) with the latest checkpoint in workdir, or the one
  of `step`.

  Writes DIR/eval/<view>.png (and <view>_depth.png), DIR/eval/metrics.json and the resolved config it used,
  DIR/eval/config.json; with a step, under DIR/eval/step_<step>/ instead, so that a learning curve keeps every
  point. All processes of a multi-process run render together (render.py); only process 0 writes and prints.

  Returns:
    The metrics dict written to metrics.json.
  """
  config_lib.validate(config, jax.device_count())
  views = loaders.load_views(config, config.eval.split, stride=config.eval.stride)
  config = loaders.with_scene_bounds(config, views)
  lpips_of = None
  if config.eval.lpips_net:  # before rendering: missing weights or too small images fail at once
    lpips_lib.check_image_size(config.eval.lpips_net, *views.images[0].shape[:2])
    lpips_of = lpips_lib.make_lpips(config.eval.lpips_net)
  model, state = restore_trained(config, workdir, step)
  render_chunk = render.make_render_chunk(model, config.data.near, config.data.far, config)
  variables = render.render_variables(state, config)

  eval_dir = os.path.join("eval", f"step_{step}") if step is not None else "eval"
  lead = train_lib.is_lead_process()
  per_image = []
  for i, name in enumerate(views.names):
    out = render.render_rays(render_chunk, variables, views.image_rays(i), config.eval.chunk)
    target = views.images[i]
    psnr = float(metrics_lib.psnr_from_mse(np.mean((out["rgb"].astype(np.float64) - target) ** 2)))
    ssim = float(metrics_lib.ssim(out["rgb"], target))
    render_path = os.path.join(eval_dir, name + ".png")
    per_image.append({"file": name, "render": render_path, "psnr": psnr, "ssim": ssim})
    if lpips_of:
      per_image[-1]["lpips"] = lpips_of(out["rgb"], target)
    if not lead:
      continue
    os.makedirs(os.path.dirname(os.path.join(workdir, render_path)), exist_ok=True)
    save_png(render.to_uint8(out["rgb"]), os.path.join(workdir, render_path))
    if config.eval.write_depth:
      depth = render.depth_to_image(out["depth"], out["acc"], config.data.near, config.data.far)
      save_png(depth, os.path.join(workdir, eval_dir, name + "_depth.png"))
    lpips_text = f", LPIPS {per_image[-1]['lpips']:.4f}" if lpips_of else ""
    print(f"{name}: PSNR {psnr:.2f} dB, SSIM {ssim:.4f}{lpips_text}", flush=True)

  result = {
      "step": int(state.step),
      "split": config.eval.split,
      "psnr": float(np.mean([r["psnr"] for r in per_image])),
      "ssim": float(np.mean([r["ssim"] for r in per_image])),
      **({"lpips": float(np.mean([r["lpips"] for r in per_image])), "lpips_net": config.eval.lpips_net}
         if lpips_of else {}),
      "background": "white" if config.data.white_background else "black",
      "per_image": per_image,
  }
  if lead:
    with written_in_place(os.path.join(workdir, eval_dir, "config.json")) as partial:
      with open(partial, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    with written_in_place(os.path.join(workdir, eval_dir, "metrics.json")) as partial:
      with open(partial, "w") as f:
        json.dump(result, f, indent=2)
  return result


@contextlib.contextmanager
def written_in_place(path):
  """Yield a temporary name beside `path` (same extension) to write the file under; it is renamed to `path` when
  the block ends without an error, and removed otherwise or on Ctrl-C: `path` is complete or untouched."""
  stem, extension = os.path.splitext(path)
  partial = f"{stem}.partial{extension}"
  with interrupts.partial_file(partial):
    try:
      yield partial
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(partial)
      raise
    os.replace(partial, path)


def save_png(image, path):
  """Write a uint8 image array as a PNG; the file is complete or absent (see written_in_place)."""
  with written_in_place(path) as partial:
    Image.fromarray(image).save(partial, format="PNG")
