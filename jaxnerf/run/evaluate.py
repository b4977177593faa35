"""Evaluation: render the test views from the latest checkpoint, write PNGs and metrics.json."""
import json
import os

import numpy as np

from jaxnerf import config as config_lib
from jaxnerf import storage
from jaxnerf.core import colormaps
from jaxnerf.data import images
from jaxnerf.data import loaders
from jaxnerf.metrics import lpips as lpips_lib
from jaxnerf.metrics import quality
from jaxnerf.run import pose_alignment
from jaxnerf.run import rendering
from jaxnerf.run import state as state_lib
from jaxnerf.run import workdir as workdir_lib


def evaluate(config, workdir, step=None):
  """Render config.eval.split (every config.eval.stride-th view) with the latest checkpoint in workdir, or the one
  of `step`.

  Writes DIR/eval/<view>.png (and, with config.eval.write_depth, <view>_depth.png, a coloured depth map, and
  <view>_depth.npy, [H, W] float32 distance along each ray, NaN where it hits nothing), DIR/eval/metrics.json and the resolved config it used,
  DIR/eval/config.json, with the scene description DIR/eval/scene.json; with a step, under DIR/eval/step_<step>/ instead, so that a learning curve keeps every
  point. All processes of a multi-process run render together (render.py); only process 0 writes and prints.

  Returns:
    The metrics dict written to metrics.json.
  """
  config_lib.validate(config)
  views = loaders.load_views(config, config.eval.split, stride=config.eval.stride)
  scene = workdir_lib.run_scene(workdir, loaders.scene_of(config, views))
  lpips_of = None
  if config.eval.lpips_net:  # before rendering: missing weights or too small images fail at once
    lpips_lib.check_image_size(config.eval.lpips_net, *views.images[0].shape[:2])
    lpips_of = lpips_lib.make_lpips(config.eval.lpips_net)
  model, state = state_lib.restore_trained(config, workdir, scene, step)
  render_chunk = rendering.make_render_chunk(model, scene, config)
  variables = rendering.render_variables(state, config, scene)
  fit = None
  if config.eval.align_poses_steps:
    fit = pose_alignment.make_fit_step(model, scene, pose_alignment.fit_schedule(config.eval.align_poses_steps))

  eval_dir = os.path.join("eval", f"step_{step}") if step is not None else "eval"
  lead = workdir_lib.is_lead_process()
  per_image = []
  for i, name in enumerate(views.names):
    target, rays, alignment = views.images[i], views.image_rays(i), {}
    if fit:
      rays, degrees, distance = pose_alignment.aligned_rays(fit, state.params, rays, target,
                                                            config.eval.align_poses_steps, config.eval.align_rays)
      alignment = {"aligned_degrees": degrees, "aligned_distance": distance}
    out = rendering.render_rays(render_chunk, variables, rays, config.eval.chunk)
    psnr = float(quality.psnr_from_mse(np.mean((out["rgb"].astype(np.float64) - target) ** 2)))
    ssim = float(quality.ssim(out["rgb"], target))
    render_path = os.path.join(eval_dir, name + ".png")
    fitted = quality.color_fit(out["rgb"], target)
    psnr_color_fit = float(quality.psnr_from_mse(np.mean((fitted - target) ** 2)))
    per_image.append({"file": name, "render": render_path, "psnr": psnr, "psnr_color_fit": psnr_color_fit,
                      "ssim": ssim, **alignment})
    if lpips_of:
      per_image[-1]["lpips"] = lpips_of(out["rgb"], target)
    if not lead:
      continue
    storage.makedirs(os.path.dirname(storage.join(workdir, render_path)))
    workdir_lib.save_png(images.to_uint8(out["rgb"]), storage.join(workdir, render_path))
    if config.eval.write_depth:
      depth_stem = storage.join(workdir, eval_dir, name + "_depth")
      workdir_lib.save_png(rendering.depth_to_image(out, config)[0], depth_stem + ".png")
      workdir_lib.save_npy(colormaps.ray_distance(out["depth"], out["acc"]), depth_stem + ".npy")
    lpips_text = f", LPIPS {per_image[-1]['lpips']:.4f}" if lpips_of else ""
    print(f"{name}: PSNR {psnr:.2f} dB, SSIM {ssim:.4f}{lpips_text}", flush=True)

  result = {
      "step": int(state.step),
      "split": config.eval.split,
      "psnr": float(np.mean([r["psnr"] for r in per_image])),
      "psnr_color_fit": float(np.mean([r["psnr_color_fit"] for r in per_image])),
      "ssim": float(np.mean([r["ssim"] for r in per_image])),
      **({"lpips": float(np.mean([r["lpips"] for r in per_image])), "lpips_net": config.eval.lpips_net}
         if lpips_of else {}),
      "pose_alignment_steps": config.eval.align_poses_steps,
      "background": "white" if scene.background == (1.0, 1.0, 1.0) else "black",
      "per_image": per_image,
  }
  if lead:
    workdir_lib.write_config(config, workdir, os.path.join(eval_dir, "config.json"))
    workdir_lib.write_scene(scene, workdir, os.path.join(eval_dir, "scene.json"))
    with workdir_lib.written_in_place(storage.join(workdir, eval_dir, "metrics.json")) as partial:
      with open(partial, "w") as f:
        json.dump(result, f, indent=2)
  return result
