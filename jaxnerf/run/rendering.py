"""Rendering whole images from a trained model, in chunks of rays so that memory stays bounded.

Each chunk is split over every device of every process (sharding.data_mesh), each device renders its own rays
with no communication (shard_map: skipping empty space compacts each device's samples on that device), and the
image is gathered back to every process, so all processes of a multi-host job call these functions together and
all get the whole image.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from jaxnerf.core import colormaps
from jaxnerf.core import rays as rays_lib
from jaxnerf.nerf import occupancy
from jaxnerf.runtime import sharding


def render_variables(state, config, scene):
  """What a render chunk takes from a TrainState: the parameters and, when config.occupancy.skip_empty, the
  occupied cells of its occupancy grid over `scene`'s box."""
  variables = {"params": state.params}
  if config.occupancy.skip_empty:
    variables["occupied"] = occupied_cells(state.density_grid, config, scene)
  return variables


def occupied_cells(density_grid, config, scene):
  """[R, R, R] bool: the occupied cells of an occupancy grid of the model of `config` in `scene`."""
  return occupancy.occupied_cells(density_grid, config.occupancy, scene.scene_box, config.model.contraction)


def skipping(cells, config, scene, training):
  """The occupancy.Skip of a render over occupied `cells`. Training: one differentiable call per level, the
  compacted samples split over sharding.data_mesh(). Renders: for one device's rays (make_render_chunk)."""
  g = config.occupancy
  if training:
    return occupancy.Skip(cells, tuple(scene.scene_box), config.model.contraction, tuple(g.train_skip_budgets),
                          one_call=True, spread=sharding.spread_over(sharding.data_mesh(), always=True),
                          devices=jax.device_count())
  return occupancy.Skip(cells, tuple(scene.scene_box), config.model.contraction, (g.skip_budget,),
                        stages=g.render_stages, min_transmittance=g.min_transmittance)


def make_render_chunk(model, scene, config=None, proposal_depth=False):
  """A jitted function (variables, rays) -> dict of rgb [n, 3], depth, disparity and acc [n] from the finest
  level of rays in `scene` (data.scene.Scene: its ray bounds and box), rendered deterministically (no jitter, no
  noise); `config` (the run's) is needed only with an occupancy grid in the variables. Rays are split over
  sharding.data_mesh() (n a multiple of its size), variables replicated; the outputs are replicated, i.e.
  gathered to every device.

  With an occupancy grid in the variables (render_variables), the fields are evaluated only in occupied cells and
  the dict also has `field_calls` [], the most calls of the fields on compacted samples that one device made
  (more than one per level when a level's occupied samples overflow config.occupancy.skip_budget). With
  `proposal_depth`, it also has the first level's depth and acc as proposal_depth and proposal_acc (the viewer
  shows them)."""
  mesh = sharding.data_mesh()

  def render_device_rays(variables, rays):  # one device's rays, no collectives
    variables = dict(variables)
    occupied = variables.pop("occupied", None)
    skip = None if occupied is None else skipping(occupied, config, scene, training=False)
    levels = model.apply(variables, rays, scene.near, scene.far, jax.random.key(0), randomized=False, skip=skip)
    finest = levels[-1].out
    out = {"rgb": finest.rgb, "depth": finest.depth, "disparity": finest.disparity, "acc": finest.acc}
    if proposal_depth:
      out["proposal_depth"], out["proposal_acc"] = levels[0].out.depth, levels[0].out.acc
    if occupied is not None:
      out["field_calls"] = jnp.reshape(sum(level.field_calls for level in levels), (1,))
    return out

  per_device = jax.shard_map(render_device_rays, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(sharding.AXIS)),
                             out_specs=PartitionSpec(sharding.AXIS), check_vma=False)

  @functools.partial(jax.jit, in_shardings=(sharding.replicated(mesh), sharding.split(mesh)),
                     out_shardings=sharding.replicated(mesh))
  def render_chunk(variables, rays):
    out = per_device(variables, rays)
    if "field_calls" in out:
      out["field_calls"] = jnp.max(out["field_calls"])
    return out

  return render_chunk


def render_rays(render_chunk, variables, rays, chunk):
  """Render any number of rays through a fixed-size chunked function.

  Args:
    render_chunk: from make_render_chunk.
    rays: Rays with [..., 3] numpy fields (radii [..., 1]), the same on every process.
    chunk: rays per call, over all devices together (rounded up to a multiple of the device count); the last
      chunk is padded so that every call has the same shape (one compilation).

  Returns:
    dict of numpy arrays: rgb [..., 3], depth, disparity and acc [...] (and field_calls [], summed over the
    chunks, when render_chunk skips empty space).
  """
  batch_shape = rays.origins.shape[:-1]
  flat = jax.tree.map(lambda x: np.asarray(x, np.float32).reshape(-1, x.shape[-1]), rays)
  num_rays = flat.origins.shape[0]
  chunk = -(-chunk // jax.device_count()) * jax.device_count()
  mesh = sharding.data_mesh()
  outputs = []
  for start in range(0, num_rays, chunk):
    piece = jax.tree.map(lambda x: x[start:start + chunk], flat)
    pad = chunk - piece.origins.shape[0]
    if pad:
      piece = jax.tree.map(lambda x: np.pad(x, ((0, pad), (0, 0)), mode="edge"), piece)
    result = render_chunk(variables, sharding.from_same_on_all(mesh, rays_lib.Rays(*piece)))
    outputs.append({name: np.asarray(x) if np.ndim(x) == 0 else np.asarray(x)[:chunk - pad]
                    for name, x in result.items()})
  joined = {}
  for name, first in outputs[0].items():
    if np.ndim(first) == 0:  # a count over the chunk (field_calls): summed
      joined[name] = sum(out[name] for out in outputs)
    else:
      joined[name] = np.concatenate([out[name] for out in outputs]).reshape(*batch_shape, *first.shape[1:])
  return joined


def depth_to_image(out, config, value_range=None):
  """A render's depth as a colour image (core/colormaps.py): distance, or disparity in contracted scenes (whose
  distances run out to infinity), over the 1st-99th percentiles of its valid pixels or over `value_range`; empty
  space white. In NDC scenes the distance is NDC depth, itself a disparity.

  Args:
    out: a render_rays dict with depth and acc [H, W].
    config: the run's config (config.model.contraction chooses disparity).
    value_range: from an earlier frame of a video, to keep its colours; None picks this image's.

  Returns:
    ([H, W, 3] uint8, the value range used).
  """
  return colormaps.depth_image(out["depth"], out["acc"], disparity=bool(config.model.contraction),
                               value_range=value_range)
