"""An occupancy grid over the scene box (Instant-NGP): which cells hold density, so that renders skip empty space.

The grid keeps, per cell, an exponential moving average of the finest field's density at random points of the
cell; training refreshes a sweep of cells every few steps (`refresh`) and the grid is part of the training state.
A cell is occupied when it absorbs a little of the light crossing it, or its density exceeds the grid's mean
(`occupied`). Rendering evaluates the
fields only at samples in occupied cells: those samples are compacted into a fixed budget (static shapes), in as
many passes as they need (`evaluate_occupied`); the other samples get zero density, which changes a render only by
the light that cells below the threshold would absorb.

This module owns the grid's life: its creation (`empty_grid`), its refresh while training (`refresh_from_field`,
`first_sweep_steps`), a whole grid at once for checkpoints that lack one (`full_grid`), the query (`occupied_cells`,
`lookup`) and the evaluation of a level's field at occupied samples only (`Skip`, `evaluate_level`). A grid covers
the unit cube of contraction.unit_coordinates: the scene box, or contracted space.
"""
from typing import Any, Callable, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from jaxnerf.core import contraction


def _same(tree):
  return tree


def empty_grid(resolution):
  """[R, R, R] float32 zeros: a grid before its first refresh."""
  return jnp.zeros((resolution,) * 3, jnp.float32)


def first_sweep_steps(grid_config):
  """Training steps until every cell of the grid has been refreshed once (config.occupancy: resolution,
  cells_per_update, update_every); training skips empty space from then on."""
  g = grid_config
  return -(-g.resolution**3 // g.cells_per_update) * g.update_every



def cell_points(cells, resolution, key=None):
  """Points in grid cells: their centres, or uniform random points inside them when `key` is given.

  Args:
    cells: [n] int32 flat cell indices (x-major: index = (i * R + j) * R + k).
    resolution: R, cells per axis.
    key: PRNG key or None.

  Returns:
    [n, 3] coordinates in the unit cube that the grid covers.
  """
  ijk = jnp.stack([cells // (resolution * resolution), (cells // resolution) % resolution, cells % resolution], -1)
  offset = 0.5 if key is None else jax.random.uniform(key, ijk.shape)
  return (ijk + offset) / resolution


def refresh(grid, density_fn, key, update, num_cells, decay=0.95):
  """One moving-average update: every cell decays, then `num_cells` cells, the next part of a sweep over the grid,
  take the max of that and the density at a random point inside them.

  Args:
    grid: [R, R, R] float32 densities.
    density_fn: unit-cube coordinates [n, 3] -> densities [n] (non-finite values count as 0: with contraction,
      corners of the cube lie beyond infinity).
    key: PRNG key for the points inside the cells.
    update: [] int, how many updates came before (which part of the sweep this one refreshes).
    num_cells: cells refreshed per update (static).
    decay: factor applied to every cell per update.

  Returns:
    The updated [R, R, R] grid.
  """
  resolution, total = grid.shape[0], grid.size
  parts = -(-total // num_cells)
  cells = (jnp.arange(num_cells, dtype=jnp.int32) + (update % parts) * num_cells) % total
  density = density_fn(cell_points(cells, resolution, key))
  density = jnp.where(jnp.isfinite(density), density, 0.0)
  return (grid * decay).reshape(-1).at[cells].max(density).reshape(grid.shape)


def occupied(grid, cell_size, opacity):
  """[R, R, R] bool: cells that absorb at least `opacity` of the light crossing them along a side (Instant-NGP's
  minimum optical thickness, 0.01), or whose density exceeds the grid's mean (which keeps the grid from emptying
  early in training, when all densities are small), and their neighbours: the grid samples random points, which
  miss surfaces much thinner than a cell in some of the cells they cross (on lego, PSNR drops by 3 dB without the
  margin and not at all with it).

  Args:
    grid: [R, R, R] densities.
    cell_size: the length of a cell in the scene's units, a scalar or [R, R, R] (grid_cell_size).
    opacity: in (0, 1).
  """
  dense = grid > jnp.minimum(-jnp.log1p(-opacity) / cell_size, jnp.mean(grid))
  return jax.lax.reduce_window(dense, False, jax.lax.bitwise_or, (3, 3, 3), (1, 1, 1), "SAME")


def lookup(occupied_cells, unit, inside, outside):
  """Whether points lie in occupied cells.

  Args:
    occupied_cells: [R, R, R] bool over the unit cube.
    unit: [..., 3] the points' unit-cube coordinates (contraction.unit_coordinates).
    inside: [...] bool, whether they lie in the cube.
    outside: the answer for points outside it (False for fields that are empty there).

  Returns:
    [...] bool.
  """
  resolution = occupied_cells.shape[0]
  ijk = jnp.clip(jnp.floor(unit * resolution).astype(jnp.int32), 0, resolution - 1)
  return jnp.where(inside, occupied_cells[ijk[..., 0], ijk[..., 1], ijk[..., 2]], outside)


def refresh_from_field(density_at, grid, key, update, grid_config, scene_box, contract, spread=_same, decay=None):
  """`refresh` of the grid from a field: density_at maps points [n, 3] in the scene to densities [n].

  Args:
    grid_config: config.occupancy (cells_per_update, decay).
    scene_box, contract: the space the grid covers (contraction.unit_coordinates).
    spread: applied to the cells' unit coordinates [n, 3] before the field sees them (the run splits them over
      its devices, as a batch is split).
    decay: instead of grid_config.decay.
  """
  def density(unit):
    return density_at(contraction.points_at_unit_coordinates(spread(unit), scene_box, contract))

  return refresh(grid, density, key, update, grid_config.cells_per_update,
                 grid_config.decay if decay is None else decay)


def full_grid(density_at, grid_config, scene_box, contract, key, spread=_same, samples_per_cell=16):
  """A whole grid at once: every cell's largest density at `samples_per_cell` random points inside it (for
  checkpoints written before the grid was part of the training state; one point per cell misses the thin
  structures that the moving average of training catches over many refreshes). Jitted; density_at as in
  refresh_from_field, a jax.tree_util.Partial when it holds parameters."""
  updates = -(-grid_config.resolution**3 // grid_config.cells_per_update) * samples_per_cell

  @jax.jit
  def fill(density_at, key):
    return jax.lax.fori_loop(
        0, updates, lambda i, g: refresh_from_field(density_at, g, jax.random.fold_in(key, i), i, grid_config,
                                                    scene_box, contract, spread, decay=1.0),
        empty_grid(grid_config.resolution))

  return fill(density_at, key)


def grid_cell_size(scene_box, contract, resolution):
  """The length in the scene of the cells of a resolution^3 grid over the unit cube: the cell side, or with
  contraction [R, R, R] per cell, the scene length of the cell's contracted side along the radius through its
  centre (the direction of rays from the cameras, near the centre): the side inside radius 1, growing as the
  square of the scene radius beyond it, infinite for the cube's corner cells beyond radius 2, which no point
  reaches."""
  if not contract:
    return min(scene_box[i + 3] - scene_box[i] for i in range(3)) / resolution
  radius = contraction.CONTRACTED_RADIUS
  side = 2.0 * radius / resolution
  centres = (jnp.arange(resolution) + 0.5) * side - radius
  s = jnp.sqrt(centres[:, None, None] ** 2 + centres[None, :, None] ** 2 + centres[None, None, :] ** 2)
  # Contracted radius s = 2 - 1/r: dr/ds = 1 / (2 - s)^2 = r^2.
  stretch = jnp.where(s <= 1.0, 1.0, 1.0 / jnp.maximum(2.0 - s, 0.0) ** 2)
  return side * stretch


def occupied_cells(grid, grid_config, scene_box, contract):
  """[R, R, R] bool: the occupied cells of a grid of densities (`occupied` with the cell size of its space and
  grid_config.threshold)."""
  cell = grid_cell_size(scene_box, contract, grid.shape[0])
  return occupied(grid, cell, grid_config.threshold)


class Skip(NamedTuple):
  """How a render skips empty space: which cells are occupied, the space they cover, and the budget of compacted
  samples per field call.

  cells: [R, R, R] bool occupied cells.
  scene_box, contract: the space the grid covers (contraction.unit_coordinates).
  budgets: samples per field call as a fraction of a level's samples, per level coarse to fine (the last entry for
    the rest).
  one_call: one differentiable call per level (training, `evaluate_in_one_call`) instead of as many calls as the
    occupied samples need (renders, `evaluate_occupied`).
  spread: applied to each call's compacted (points, per_ray); training splits them over its devices, which would
    otherwise each make the whole call (renders compact each device's own rays, with nothing to spread).
  devices: budgets are rounded up to a multiple of this (the devices the samples are split over).
  stages, min_transmittance: renders evaluate the finest level in `stages` groups of consecutive samples, nearest
    first, leaving out the samples of rays that let less than min_transmittance of the light through to the group
    (early ray termination; `evaluate_front_to_back`).
  """
  cells: Any
  scene_box: Tuple[float, ...]
  contract: bool
  budgets: Tuple[float, ...]
  one_call: bool = False
  spread: Callable = _same
  devices: int = 1
  stages: int = 1
  min_transmittance: float = 0.0


def evaluate_level(field_fn, points, positions, per_ray, skip, level, empty_outside_box, empty_raw_density,
                   optical_depth=None):
  """One level's field evaluated at the samples in occupied cells only.

  Args:
    field_fn: as in evaluate_occupied.
    points: what the field takes, [n, s, 3] (or a pytree of [n, s, ...] arrays, e.g. cones.Gaussians).
    positions: [n, s, 3] the samples' positions (the Gaussians' means).
    per_ray: what the field takes besides the points, one per ray: [n, ...] arrays (a pytree: view directions
      [n, 3], appearance codes).
    skip: Skip.
    level: the level's index, coarse to fine (its entry of skip.budgets).
    empty_outside_box: the field is empty outside the scene box, so samples there need no evaluation; other
      fields are evaluated there.
    empty_raw_density: raw density of the samples not evaluated (zero density after the activation).
    optical_depth: None, or raw density [n, k] of the first k samples -> their optical depths [n, k]: renders
      then stop along rays that are opaque (skip.stages, skip.min_transmittance).

  Returns:
    rgb [n, s, 3] or None, raw density [n, s], the calls made ([] int, renders) and whether the budget overflowed
    ([] bool, training); the one of the last two that does not apply is None.
  """
  unit, inside = contraction.unit_coordinates(positions, skip.scene_box, skip.contract)
  mask = lookup(skip.cells, unit, inside, outside=not empty_outside_box)
  fraction = skip.budgets[min(level, len(skip.budgets) - 1)]
  budget = max(1, -(-int(fraction * mask.size) // skip.devices)) * skip.devices
  if skip.one_call:
    rgb, raw, overflow = evaluate_in_one_call(field_fn, points, per_ray, mask, budget, empty_raw_density,
                                              skip.spread)
    return rgb, raw, None, overflow
  if optical_depth is not None and skip.stages > 1:
    rgb, raw, calls = evaluate_front_to_back(field_fn, points, per_ray, mask, fraction, empty_raw_density, skip,
                                             optical_depth)
    return rgb, raw, calls, None
  rgb, raw, calls = evaluate_occupied(field_fn, points, per_ray, mask, budget, empty_raw_density, skip.spread)
  return rgb, raw, calls, None


def evaluate_front_to_back(field_fn, points, per_ray, mask, fraction, empty_raw_density, skip, optical_depth):
  """evaluate_occupied in skip.stages groups of consecutive samples, nearest first, each leaving out the rays whose
  transmittance in front of it is below skip.min_transmittance: those samples could add at most that fraction of
  their colour to the render (their density stays empty_raw_density).

  Args: as evaluate_level (fraction: the budget per call as a fraction of a group's samples).

  Returns:
    rgb [n, s, 3] or None, raw density [n, s], and the calls made.
  """
  n, s = mask.shape
  bounds = [round(k * s / skip.stages) for k in range(skip.stages + 1)]
  depth_in_front = jnp.zeros((n,), jnp.float32)  # optical depth of the groups evaluated so far
  rgbs, raws, calls = [], [], 0
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    open_rays = jnp.exp(-depth_in_front) >= skip.min_transmittance
    group = mask[:, lo:hi] & open_rays[:, None]
    budget = max(1, -(-int(fraction * group.size) // skip.devices)) * skip.devices
    rgb, raw, group_calls = evaluate_occupied(field_fn, jax.tree.map(lambda a: a[:, lo:hi], points), per_ray,
                                              group, budget, empty_raw_density, skip.spread)
    rgbs.append(rgb)
    raws.append(raw)
    calls = calls + group_calls
    depth_in_front = jnp.sum(optical_depth(jnp.concatenate(raws, axis=-1)), axis=-1)
  rgb = None if rgbs[0] is None else jnp.concatenate(rgbs, axis=1)
  return rgb, jnp.concatenate(raws, axis=1), calls


def _call_at(field_fn, flat_points, per_ray, index, num_samples, spread):
  """field_fn at the samples of flat indices index [budget] (flat_points: [n * s, 1, ...] arrays; indices of n * s
  and beyond pad the call): rgb [budget, 3] or None, raw density [budget]."""
  total = jax.tree.leaves(flat_points)[0].shape[0]
  safe = jnp.minimum(index, total - 1)
  rays = safe // num_samples
  rgb, raw = field_fn(*spread((jax.tree.map(lambda a: a[safe], flat_points), jax.tree.map(lambda a: a[rays], per_ray))))
  return (None if rgb is None else rgb[:, 0]), raw[:, 0]


def _flat(points, n, s):
  return jax.tree.map(lambda a: a.reshape(n * s, 1, *a.shape[2:]), points)


def evaluate_occupied(field_fn, points, per_ray, mask, budget, empty_raw_density, spread=_same):
  """A field evaluated only where `mask` holds, `budget` samples per call.

  Args:
    field_fn: (points [m, 1, 3] (or a pytree of [m, 1, ...] arrays, e.g. cones.Gaussians), per_ray of [m, ...]) ->
      (rgb [m, 1, 3] or None, raw density [m, 1]).
    points: [n, s, 3] (or a pytree of [n, s, ...] arrays).
    per_ray: what the field takes besides the points, one per ray: [n, ...] arrays (a pytree: view directions
      [n, 3], appearance codes).
    mask: [n, s] bool, the samples to evaluate.
    budget: samples per call of field_fn (static).
    empty_raw_density: raw density given to the other samples (zero density after the activation).
    spread: applied to each call's compacted (points, per_ray) (Skip.spread).

  Returns:
    rgb [n, s, 3] (zero where not evaluated) or None, raw density [n, s], and the number of calls made.
  """
  n, s = mask.shape
  flat_points = _flat(points, n, s)
  flat_mask = mask.reshape(-1)
  count = jnp.sum(flat_mask.astype(jnp.int32))
  # The selected samples' flat indices, compacted once, padded with n * s to whole calls.
  (order,) = jnp.nonzero(flat_mask, size=-(-n * s // budget) * budget, fill_value=n * s)
  has_color = jax.eval_shape(field_fn, jax.tree.map(lambda a: a[:1], flat_points),
                             jax.tree.map(lambda a: a[:1], per_ray))[0] is not None

  def one_call(carry):
    calls, rgb, raw = carry
    index = jax.lax.dynamic_slice(order, (calls * budget,), (budget,))
    call_rgb, call_raw = _call_at(field_fn, flat_points, per_ray, index, s, spread)
    raw = raw.at[index].set(call_raw, mode="drop")
    if has_color:
      rgb = rgb.at[index].set(call_rgb, mode="drop")
    return calls + 1, rgb, raw

  rgb = jnp.zeros((n * s, 3), jnp.float32) if has_color else jnp.zeros((0,), jnp.float32)
  raw = jnp.full((n * s,), empty_raw_density, jnp.float32)
  calls, rgb, raw = jax.lax.while_loop(lambda carry: carry[0] * budget < count, one_call,
                                       (jnp.zeros((), jnp.int32), rgb, raw))
  return (rgb.reshape(n, s, 3) if has_color else None), raw.reshape(n, s), calls


def evaluate_in_one_call(field_fn, points, per_ray, mask, budget, empty_raw_density, spread=_same):
  """The same values as evaluate_occupied, in one differentiable call of the field: on the compacted samples
  where `mask` holds when they fit `budget`, otherwise on all samples (then masked).

  Args: as evaluate_occupied.

  Returns:
    rgb [n, s, 3] (zero where not evaluated) or None, raw density [n, s], and [] bool whether the masked samples
    overflowed the budget (and all samples were evaluated).
  """
  n, s = mask.shape
  flat_mask = mask.reshape(-1)
  fits = jnp.sum(flat_mask.astype(jnp.int32)) <= budget

  def compacted(_):
    (index,) = jnp.nonzero(flat_mask, size=budget, fill_value=n * s)
    call_rgb, call_raw = _call_at(field_fn, _flat(points, n, s), per_ray, index, s, spread)
    raw = jnp.full((n * s,), empty_raw_density, call_raw.dtype).at[index].set(call_raw, mode="drop")
    rgb = None if call_rgb is None else jnp.zeros((n * s, 3), call_rgb.dtype).at[index].set(
        call_rgb, mode="drop").reshape(n, s, 3)
    return rgb, raw.reshape(n, s)

  def everything(_):
    rgb, raw = field_fn(points, per_ray)
    raw = jnp.where(mask, raw, empty_raw_density)
    return (None if rgb is None else jnp.where(mask[..., None], rgb, 0.0)), raw

  rgb, raw = jax.lax.cond(fits, compacted, everything, None)
  return rgb, raw, ~fits
