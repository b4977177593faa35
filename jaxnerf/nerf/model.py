"""The renderer: a list of levels, each a (sampler, field) pair, run coarse to fine along each ray.

Level k's sampler places samples from level k-1's weights; its field is evaluated there and composited. The NeRF
paper's model is two levels (stratified then hierarchical samples, a coarse and a fine MLP); the fast model is one
or two proposal levels (density-only hash-grid fields, interval resampling) before a hash-grid field with colour;
mip-NeRF is two levels of intervals sharing one MLP, which sees each interval as a conical frustum (cones.py).
`build_model(config)` makes any of them from config.model.
"""
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnerf.core import compositing
from jaxnerf.core import cones
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import fields as fields_lib
from jaxnerf.nerf import hash_field
from jaxnerf.nerf import layers
from jaxnerf.nerf import occupancy
from jaxnerf.nerf import sampling


class Level(NamedTuple):
  samples: sampling.Samples  # [num_rays, num_samples] t and [num_rays, num_samples + 1] edges
  out: compositing.Composite  # rgb None for density-only fields
  field_calls: Any = None  # [] int: calls of the field on compacted samples (renders that skip empty space)
  overflow: Any = None  # [] bool: training skipped empty space but the occupied samples overflowed the budget


class AppearanceCodes(nn.Module):
  """NeRF-W's per-photo appearance codes (generative latent optimisation): a learned [num_views, dim] table, zero
  at the start. The code of a training view enters the colour branch of the fields with colour, so that exposure
  and white balance that change from photo to photo do not have to be explained by the scene; views without a code
  (held-out and novel views) get the mean code."""
  num_views: int
  dim: int

  @nn.compact
  def __call__(self, view, batch_shape):
    """view: [*batch_shape] int indices of training views, or None (the mean code). Returns [*batch_shape, dim]."""
    table = self.param("table", nn.initializers.zeros_init(), (self.num_views, self.dim))
    if view is None:
      return jnp.broadcast_to(jnp.mean(table, axis=0), (*batch_shape, self.dim))
    return table[view]


class Renderer(nn.Module):
  """Levels of (sampler, field), coarse to fine.

  Attributes:
    fields: the field modules.
    samplers: one sampler per level (see sampling.py).
    level_fields: index into `fields` of each level's field (levels may share a field).
    density_noise: std of noise added to raw density while training.
    background: default RGB where rays are not fully absorbed.
    cones: give the fields each interval's conical frustum as cones.Gaussians (mip-NeRF) instead of its point.
    contraction: the fields contract space (frustums then need full covariances).
    appearance: None, or the AppearanceCodes whose codes the fields with colour see.
  """
  fields: Sequence[nn.Module]
  samplers: Sequence[Any]
  level_fields: Sequence[int]
  density_noise: float = 0.0
  background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
  cones: bool = False
  contraction: bool = False
  appearance: Optional[AppearanceCodes] = None

  def __call__(self, rays, near, far, key, randomized, background=None, skip=None, view=None) -> List[Level]:
    """Render a batch of rays.

    Args:
      rays: Rays with [num_rays, 3] fields (and [num_rays, 1] radii, or None, used with `cones`).
      near, far: scalars or [num_rays, 1] bounds.
      key: PRNG key (used only when randomized).
      randomized: jitter samples and add density noise (training).
      background: None (the default colour) or [3] / [num_rays, 3] colours.
      skip: None, or an occupancy.Skip: the fields are evaluated only at samples in occupied cells, the others
        have zero density (occupancy.evaluate_level).
      view: None, or [num_rays] int: the training view of each ray, whose appearance code the fields see (the
        mean code without; used only with `appearance`).

    Returns:
      One Level per sampler, coarse to fine, with [num_rays, ...] fields.
    """
    background = jnp.asarray(self.background if background is None else background, jnp.float32)
    batch_shape = rays.origins.shape[:-1]
    keys = jax.random.split(key, 2 * len(self.samplers))
    codes = None if self.appearance is None else self.appearance(view, batch_shape)
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
      if skip is None:
        rgb, raw_density = field(points, rays.viewdirs, codes)
      else:
        unbound, variables = field.unbind()
        optical_depth = None
        if i == len(self.samplers) - 1:  # renders stop along opaque rays at the finest level
          lengths = compositing.interval_lengths(samples.edges, rays.directions)
          optical_depth = lambda raw: field.density_activation(raw) * lengths[:, :raw.shape[1]]
        rgb, raw_density, calls, overflow = occupancy.evaluate_level(
            lambda p, per_ray: unbound.apply(variables, p, *per_ray), points, points.means if self.cones else points,
            (rays.viewdirs, codes), skip, i, field.empty_outside_box, layers.EMPTY_RAW_DENSITY, optical_depth)
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
    codes = None if self.appearance is None else self.appearance(None, flat.shape[:1])
    rgb, raw_density = field(flat, dirs, codes)
    density = field.density_activation(raw_density).reshape(batch_shape)
    if viewdirs is None or rgb is None:
      return None, density
    return rgb.reshape(*batch_shape, 3), density


class LevelLayout(NamedTuple):
  """What a SAMPLERS entry builds: the Renderer's fields, samplers, level_fields and cones."""
  fields: List[nn.Module]
  samplers: List[Any]  # one per level
  level_fields: List[int]  # index into fields of each level's field
  cones: bool = False  # the fields see conical frustums (Renderer.cones)


def hierarchical_levels(config, make_field, scene_box):
  """The NeRF paper's levels: stratified coarse samples, then hierarchical fine samples, each with its own field
  (only the coarse level when num_fine_samples is 0)."""
  h = config.model.hierarchical
  samplers = [sampling.Stratified(h.num_coarse_samples, h.lindisp, config.model.spacing)]
  if h.num_fine_samples > 0:
    samplers.append(sampling.Hierarchical(h.num_fine_samples))
  return LevelLayout([make_field(config, scene_box) for _ in samplers], samplers, list(range(len(samplers))))


def proposal_levels(config, make_field, scene_box):
  """mip-NeRF 360's levels: a density-only proposal field per entry of proposal.num_samples, then the field."""
  p = config.model.proposal
  counts = list(p.num_samples) + [p.num_final_samples]
  return LevelLayout([hash_field.build_proposal(config, scene_box) for _ in p.num_samples] +
                     [make_field(config, scene_box)],
                     [sampling.Intervals(n, config.model.spacing) for n in counts], list(range(len(counts))))


def mip_levels(config, make_field, scene_box):
  """mip-NeRF's levels: stratified intervals, then intervals resampled from their blurred weights, both seen as
  conical frustums by one shared field."""
  m = config.model.mip
  samplers = [sampling.Intervals(m.num_coarse_samples, config.model.spacing),
              sampling.BlurredIntervals(m.num_fine_samples, m.resample_padding, config.model.spacing)]
  return LevelLayout([make_field(config, scene_box)], samplers, [0, 0], cones=True)


# config.model.sampler -> a function (config, field builder, scene box) -> LevelLayout.
SAMPLERS = {"hierarchical": hierarchical_levels, "proposal": proposal_levels, "mip": mip_levels}


def build_model(config, scene=None):
  """The Renderer that config.model describes in `scene` (a data.scene.Scene: its bounded fields cover
  scene.scene_box, and renders show scene.background); without a scene (synthetic rays in tests), config.data's
  box and a white background."""
  m = config.model
  if m.field not in fields_lib.FIELDS:
    raise ConfigError(f"config.model.field: expected one of {tuple(fields_lib.FIELDS)}, got {m.field!r}")
  if m.sampler not in SAMPLERS:
    raise ConfigError(f"config.model.sampler: expected one of {tuple(SAMPLERS)}, got {m.sampler!r}")
  if m.sampler == "mip" and m.field != "mlp":
    raise ConfigError(f"config.model.field: the mip sampler needs the 'mlp' field (the integrated encoding of "
                      f"conical frustums), got {m.field!r}")
  scene_box = tuple(config.data.scene_box if scene is None else scene.scene_box)
  background = (1.0, 1.0, 1.0) if scene is None else tuple(scene.background)
  levels = SAMPLERS[m.sampler](config, fields_lib.FIELDS[m.field].build, scene_box)
  return Renderer(fields=tuple(levels.fields), samplers=tuple(levels.samplers),
                  level_fields=tuple(levels.level_fields), density_noise=m.density_noise, background=background,
                  cones=levels.cones, contraction=m.contraction, appearance=appearance_codes(config, scene))


def appearance_codes(config, scene):
  """The AppearanceCodes of config.views.embedding_dim values for each of scene.train_frames, or None (also without
  a scene: synthetic rays, and the config's validation, which checks the settings only)."""
  dim = config.views.embedding_dim
  if dim and config.model.field == "mlp" and not config.model.mlp.use_viewdirs:
    raise ConfigError("config.views.embedding_dim: appearance codes enter the colour branch, which "
                      "config.model.mlp.use_viewdirs=False leaves out")
  if not dim or scene is None:
    return None
  if not scene.train_frames:
    raise ConfigError("config.views.embedding_dim: appearance codes need the scene's training views, which this "
                      "run's scene.json does not list")
  return AppearanceCodes(len(scene.train_frames), dim)
