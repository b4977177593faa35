"""The renderer: a list of levels, each a (sampler, field) pair, run coarse to fine along each ray.

Level k's sampler places samples from level k-1's weights; its field is evaluated there and composited. The NeRF
paper's model is two levels (stratified then hierarchical samples, a coarse and a fine MLP); the fast model is one
or two proposal levels (density-only hash-grid fields, interval resampling) before a hash-grid field with colour;
mip-NeRF is two levels of intervals sharing one MLP, which sees each interval as a conical frustum (cones.py).
`build_model(config)` makes any of them from config.model.
"""
from typing import Any, List, NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnerf.core import compositing
from jaxnerf.core import cones
from jaxnerf.nerf import fields
from jaxnerf.nerf import hash_encoding
from jaxnerf.nerf import occupancy
from jaxnerf.nerf import sampling
from jaxnerf.runtime import sharding
from jaxnerf.errors import ConfigError


class Level(NamedTuple):
  samples: sampling.Samples  # [num_rays, num_samples] t and [num_rays, num_samples + 1] edges
  out: compositing.Composite  # rgb None for density-only fields
  field_calls: Any = None  # [] int: calls of the field on compacted samples (renders that skip empty space)
  overflow: Any = None  # [] bool: training skipped empty space but the occupied samples overflowed the budget


class Renderer(nn.Module):
  """Levels of (sampler, field), coarse to fine.

  Attributes:
    fields: the field modules.
    samplers: one sampler per level (see sampling.py).
    level_fields: index into `fields` of each level's field (levels may share a field).
    density_noise: std of noise added to raw density while training.
    background: default RGB where rays are not fully absorbed.
    cones: give the fields each interval's conical frustum as cones.Gaussians (mip-NeRF) instead of its point.
    scene_box: the box an occupancy grid covers (hash fields are empty outside it), unless...
    contraction: ...the fields contract space, and the grid covers contracted space (fields.unit_coordinates).
    skip_budget: with an occupancy grid, samples per field call, as a fraction of the rays' samples.
    train_skip_budgets: the same when training (one call per level; all samples when they overflow it), per level,
      coarse to fine; levels beyond its length use its last entry.
  """
  fields: Sequence[nn.Module]
  samplers: Sequence[Any]
  level_fields: Sequence[int]
  density_noise: float = 0.0
  background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
  cones: bool = False
  scene_box: Tuple[float, ...] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
  contraction: bool = False
  skip_budget: float = 0.25
  train_skip_budgets: Tuple[float, ...] = (0.5,)

  def __call__(self, rays, near, far, key, randomized, background=None, occupied=None,
               differentiable=False) -> List[Level]:
    """Render a batch of rays.

    Args:
      rays: Rays with [num_rays, 3] fields (and [num_rays, 1] radii, or None, used with `cones`).
      near, far: scalars or [num_rays, 1] bounds.
      key: PRNG key (used only when randomized).
      randomized: jitter samples and add density noise (training).
      background: None (the default colour) or [3] / [num_rays, 3] colours.
      occupied: None, or an [R, R, R] bool occupancy grid over scene_box: the fields are evaluated only at samples
        in occupied cells, the others have zero density (occupancy.evaluate_occupied).
      differentiable: evaluate occupied samples in one call per level (occupancy.evaluate_in_one_call, with
        train_skip_budgets), which gradients can pass, rather than in as many calls as renders need.

    Returns:
      One Level per sampler, coarse to fine, with [num_rays, ...] fields.
    """
    background = jnp.asarray(self.background if background is None else background, jnp.float32)
    batch_shape = rays.origins.shape[:-1]
    keys = jax.random.split(key, 2 * len(self.samplers))
    levels, previous = [], None
    for i, (sampler, field_index) in enumerate(zip(self.samplers, self.level_fields)):
      field = self.fields[field_index]
      samples = sampler(keys[2 * i], batch_shape, near, far, previous, randomized)
      if self.cones:
        # The contraction's Jacobian mixes the axes: contracted Gaussians need the full covariances.
        points = cones.frustum_gaussians(rays.origins, rays.directions, rays.radii, samples.edges,
                                         diagonal=not self.contraction)
      else:
        points = rays.origins[..., None, :] + samples.t[..., None] * rays.directions[..., None, :]
      calls = overflow = None
      if occupied is None:
        rgb, raw_density = field(points, rays.viewdirs)
      else:
        unit, inside = fields.unit_coordinates(points.means if self.cones else points, self.scene_box,
                                               self.contraction)
        # Hash fields are empty outside the box; the paper's MLP is not, so samples outside it are kept.
        mask = occupancy.lookup(occupied, unit, inside, outside=not _empty_outside_box(field))
        unbound, variables = field.unbind()
        field_fn = lambda p, d: unbound.apply(variables, p, d)
        if differentiable:
          fraction = self.train_skip_budgets[min(i, len(self.train_skip_budgets) - 1)]
          rgb, raw_density, overflow = occupancy.evaluate_in_one_call(
              field_fn, points, rays.viewdirs, mask, _device_multiple(fraction * mask.size),
              fields.EMPTY_RAW_DENSITY, _split_over_devices)
        else:
          rgb, raw_density, calls = occupancy.evaluate_occupied(
              field_fn, points, rays.viewdirs, mask, _device_multiple(self.skip_budget * mask.size),
              fields.EMPTY_RAW_DENSITY, _split_over_devices)
      if randomized and self.density_noise > 0:
        raw_density = raw_density + self.density_noise * jax.random.normal(keys[2 * i + 1], raw_density.shape)
      density = field.density_activation(raw_density)
      out = compositing.composite(rgb, density, samples.t, samples.edges, rays.directions, background)
      levels.append(Level(samples, out, calls, overflow))
      previous = (samples, out.weights)
    return levels

  def field_at(self, points, viewdirs=None):
    """The finest level's field at points: (rgb [..., 3], or None without viewdirs, and density [...]).

    Args:
      points: [..., 3].
      viewdirs: None or [..., 3] unit directions, one per point.
    """
    field = self.fields[self.level_fields[-1]]
    batch_shape = points.shape[:-1]
    flat = points.reshape(-1, 1, 3)
    # Fields take one direction per ray; without viewdirs the colour is computed for an arbitrary one and dropped.
    dirs = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 1.0], points.dtype), (flat.shape[0], 3)) if viewdirs is None \
        else viewdirs.reshape(-1, 3)
    if self.cones:  # a point is a frustum of no extent
      flat = cones.Gaussians(flat, jnp.zeros_like(flat))
    rgb, raw_density = field(flat, dirs)
    density = field.density_activation(raw_density).reshape(batch_shape)
    if viewdirs is None or rgb is None:
      return None, density
    return rgb.reshape(*batch_shape, 3), density


def _device_multiple(samples):
  """A budget of compacted samples: `samples` rounded up to a multiple of the device count."""
  devices = jax.device_count()
  return max(1, -(-int(samples) // devices)) * devices


def _split_over_devices(tree):
  """Compacted samples split over sharding.data_mesh(), as a batch is: without it every device would evaluate
  all of them."""
  mesh = sharding.data_mesh()
  return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding.split(mesh)), tree)


def _empty_outside_box(field):
  return isinstance(field, (fields.HashField, fields.HashDensityField))


def mlp_field(config):
  m = config.model.mlp
  return fields.NeRFMLP(
      depth=m.depth, width=m.width, skip_layer=m.skip_layer, view_width=m.view_width,
      position_degrees=(m.position_min_deg, m.position_max_deg),
      direction_degrees=(m.direction_min_deg, m.direction_max_deg), use_viewdirs=m.use_viewdirs,
      density_activation=_density_activation(m.density_activation, "model.mlp.density_activation"),
      siren_trunk=_is_siren(m.activation, "model.mlp.activation"),
      siren_color=_is_siren(m.color_activation, "model.mlp.color_activation"), siren_w0=m.siren_w0,
      compute_dtype=compute_dtype(config), contraction=config.model.contraction)


def _is_siren(name, field_name):
  """Whether an MLP activation setting ("relu" or "siren") names SIREN's sine layers."""
  if name not in ("relu", "siren"):
    raise ConfigError(f"config.{field_name}: expected 'relu' or 'siren', got {name!r}")
  return name == "siren"


def hash_field(config):
  h = config.model.hash
  return fields.HashField(
      encoding=hash_encoding.HashEncoding(h.num_levels, h.features_per_level, h.log2_table_size, h.min_resolution,
                                          h.max_resolution),
      scene_box=tuple(config.data.scene_box), density_width=h.density_width, geo_features=h.geo_features,
      color_width=h.color_width, color_depth=h.color_depth, sh_degree=h.sh_degree,
      density_activation=_density_activation(h.density_activation, "model.hash.density_activation"),
      compute_dtype=compute_dtype(config), contraction=config.model.contraction)


def proposal_field(config):
  p = config.model.proposal
  return fields.HashDensityField(
      encoding=hash_encoding.HashEncoding(p.num_levels, p.features_per_level, p.log2_table_size, p.min_resolution,
                                          p.max_resolution),
      scene_box=tuple(config.data.scene_box), width=p.width, compute_dtype=compute_dtype(config),
      contraction=config.model.contraction)


# config.model.field -> a function config -> field module.
FIELDS = {"mlp": mlp_field, "hash": hash_field}


def compute_dtype(config):
  """The fields' matmul input dtype, config.model.compute_dtype."""
  name = config.model.compute_dtype
  if name not in ("float32", "bfloat16"):
    raise ConfigError(f"config.model.compute_dtype: expected 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def _density_activation(name, field_name):
  if name not in fields.DENSITY_ACTIVATIONS:
    raise ConfigError(f"config.{field_name}: expected one of {tuple(fields.DENSITY_ACTIVATIONS)}, got {name!r}")
  return fields.DENSITY_ACTIVATIONS[name]


class LevelLayout(NamedTuple):
  """What a SAMPLERS entry builds: the Renderer's fields, samplers, level_fields and cones."""
  fields: List[nn.Module]
  samplers: List[Any]  # one per level
  level_fields: List[int]  # index into fields of each level's field
  cones: bool = False  # the fields see conical frustums (Renderer.cones)


def hierarchical_levels(config, make_field):
  """The NeRF paper's levels: stratified coarse samples, then hierarchical fine samples, each with its own field
  (only the coarse level when num_fine_samples is 0)."""
  h = config.model.hierarchical
  samplers = [sampling.Stratified(h.num_coarse_samples, h.lindisp, config.model.spacing)]
  if h.num_fine_samples > 0:
    samplers.append(sampling.Hierarchical(h.num_fine_samples))
  return LevelLayout([make_field(config) for _ in samplers], samplers, list(range(len(samplers))))


def proposal_levels(config, make_field):
  """mip-NeRF 360's levels: a density-only proposal field per entry of proposal.num_samples, then the field."""
  p = config.model.proposal
  counts = list(p.num_samples) + [p.num_final_samples]
  return LevelLayout([proposal_field(config) for _ in p.num_samples] + [make_field(config)],
                     [sampling.Intervals(n, config.model.spacing) for n in counts], list(range(len(counts))))


def mip_levels(config, make_field):
  """mip-NeRF's levels: stratified intervals, then intervals resampled from their blurred weights, both seen as
  conical frustums by one shared field."""
  m = config.model.mip
  samplers = [sampling.Intervals(m.num_coarse_samples, config.model.spacing),
              sampling.BlurredIntervals(m.num_fine_samples, m.resample_padding, config.model.spacing)]
  return LevelLayout([make_field(config)], samplers, [0, 0], cones=True)


# config.model.sampler -> a function (config, field maker) -> LevelLayout.
SAMPLERS = {"hierarchical": hierarchical_levels, "proposal": proposal_levels, "mip": mip_levels}


def build_model(config):
  """The Renderer that config.model describes."""
  m = config.model
  if m.field not in FIELDS:
    raise ConfigError(f"config.model.field: expected one of {tuple(FIELDS)}, got {m.field!r}")
  if m.sampler not in SAMPLERS:
    raise ConfigError(f"config.model.sampler: expected one of {tuple(SAMPLERS)}, got {m.sampler!r}")
  if m.sampler == "mip" and m.field != "mlp":
    raise ConfigError(f"config.model.field: the mip sampler needs the 'mlp' field (the integrated encoding of "
                      f"conical frustums), got {m.field!r}")
  levels = SAMPLERS[m.sampler](config, FIELDS[m.field])
  background = (1.0, 1.0, 1.0) if config.data.white_background else (0.0, 0.0, 0.0)
  return Renderer(fields=tuple(levels.fields), samplers=tuple(levels.samplers),
                  level_fields=tuple(levels.level_fields), density_noise=m.density_noise, background=background,
                  cones=levels.cones, scene_box=tuple(config.data.scene_box), contraction=m.contraction,
                  skip_budget=config.occupancy.skip_budget,
                  train_skip_budgets=tuple(config.occupancy.train_skip_budgets))
