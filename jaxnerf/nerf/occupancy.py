"""An occupancy grid over the scene box (Instant-NGP): which cells hold density, so that renders skip empty space.

The grid keeps, per cell, an exponential moving average of the finest field's density at random points of the
cell; training refreshes a sweep of cells every few steps (`refresh`) and the grid is part of the training state.
A cell is occupied when it absorbs a little of the light crossing it, or its density exceeds the grid's mean
(`occupied`). Rendering evaluates the
fields only at samples in occupied cells: those samples are compacted into a fixed budget (static shapes), in as
many passes as they need (`evaluate_occupied`); the other samples get zero density, which changes a render only by
the light that cells below the threshold would absorb.
"""
import jax
import jax.numpy as jnp


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
    cell_size: the length of a cell in the scene's units, a scalar or [R, R, R] (fields.grid_cell_size).
    opacity: in (0, 1).
  """
  dense = grid > jnp.minimum(-jnp.log1p(-opacity) / cell_size, jnp.mean(grid))
  return jax.lax.reduce_window(dense, False, jax.lax.bitwise_or, (3, 3, 3), (1, 1, 1), "SAME")


def lookup(occupied_cells, unit, inside, outside):
  """Whether points lie in occupied cells.

  Args:
    occupied_cells: [R, R, R] bool over the unit cube.
    unit: [..., 3] the points' unit-cube coordinates (fields.unit_coordinates).
    inside: [...] bool, whether they lie in the cube.
    outside: the answer for points outside it (False for fields that are empty there).

  Returns:
    [...] bool.
  """
  resolution = occupied_cells.shape[0]
  ijk = jnp.clip(jnp.floor(unit * resolution).astype(jnp.int32), 0, resolution - 1)
  return jnp.where(inside, occupied_cells[ijk[..., 0], ijk[..., 1], ijk[..., 2]], outside)


def evaluate_occupied(field_fn, points, viewdirs, mask, budget, empty_raw_density, spread=lambda tree: tree):
  """A field evaluated only where `mask` holds, `budget` samples per call.

  Args:
    field_fn: (points [m, 1, 3] (or a pytree of [m, 1, ...] arrays, e.g. cones.Gaussians), viewdirs [m, 3]) ->
      (rgb [m, 1, 3] or None, raw density [m, 1]).
    points: [n, s, 3] (or a pytree of [n, s, ...] arrays).
    viewdirs: [n, 3].
    mask: [n, s] bool, the samples to evaluate.
    budget: samples per call of field_fn (static).
    empty_raw_density: raw density given to the other samples (zero density after the activation).
    spread: applied to each call's compacted (points, viewdirs); the renderer splits them over the devices, which
      would otherwise each make the whole call.

  Returns:
    rgb [n, s, 3] (zero where not evaluated) or None, raw density [n, s], and the number of calls made.
  """
  n, s = mask.shape
  flat_points = jax.tree.map(lambda a: a.reshape(n * s, 1, *a.shape[2:]), points)
  flat_mask = mask.reshape(-1)
  rank = jnp.cumsum(flat_mask.astype(jnp.int32)) - 1  # position of each selected sample among the selected
  count = rank[-1] + 1
  has_color = jax.eval_shape(field_fn, jax.tree.map(lambda a: a[:1], flat_points), viewdirs[:1])[0] is not None

  def one_call(carry):
    calls, rgb, raw = carry
    chosen = flat_mask & (rank >= calls * budget) & (rank < (calls + 1) * budget)
    (index,) = jnp.nonzero(chosen, size=budget, fill_value=n * s)
    safe = jnp.minimum(index, n * s - 1)
    call_rgb, call_raw = field_fn(*spread((jax.tree.map(lambda a: a[safe], flat_points), viewdirs[safe // s])))
    raw = raw.at[index].set(call_raw[:, 0], mode="drop")
    if has_color:
      rgb = rgb.at[index].set(call_rgb[:, 0], mode="drop")
    return calls + 1, rgb, raw

  rgb = jnp.zeros((n * s, 3), jnp.float32) if has_color else jnp.zeros((0,), jnp.float32)
  raw = jnp.full((n * s,), empty_raw_density, jnp.float32)
  calls, rgb, raw = jax.lax.while_loop(lambda carry: carry[0] * budget < count, one_call,
                                       (jnp.zeros((), jnp.int32), rgb, raw))
  return (rgb.reshape(n, s, 3) if has_color else None), raw.reshape(n, s), calls


def evaluate_in_one_call(field_fn, points, viewdirs, mask, budget, empty_raw_density, spread=lambda tree: tree):
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
    flat_points = jax.tree.map(lambda a: a.reshape(n * s, 1, *a.shape[2:]), points)
    (index,) = jnp.nonzero(flat_mask, size=budget, fill_value=n * s)
    safe = jnp.minimum(index, n * s - 1)
    call_rgb, call_raw = field_fn(*spread((jax.tree.map(lambda a: a[safe], flat_points), viewdirs[safe // s])))
    raw = jnp.full((n * s,), empty_raw_density, call_raw.dtype).at[index].set(call_raw[:, 0], mode="drop")
    rgb = None if call_rgb is None else jnp.zeros((n * s, 3), call_rgb.dtype).at[index].set(
        call_rgb[:, 0], mode="drop").reshape(n, s, 3)
    return rgb, raw.reshape(n, s)

  def everything(_):
    rgb, raw = field_fn(points, viewdirs)
    raw = jnp.where(mask, raw, empty_raw_density)
    return (None if rgb is None else jnp.where(mask[..., None], rgb, 0.0)), raw

  rgb, raw = jax.lax.cond(fits, compacted, everything, None)
  return rgb, raw, ~fits
