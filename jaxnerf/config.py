"""The one config schema. Files in configs/ start from `base_config()` and change values, never add fields.

Groups: `data` (what scene and how it is loaded), `model` (sampler and field, with a subgroup for each kind),
`occupancy` (the grid that lets renders skip empty space), `views` (learned corrections of the training views'
poses and colours), `loss` (weights of the loss terms), `train`
(optimisation, batching, checkpointing, logging), `eval` (test rendering).
"""
import ml_collections

import jaxnerf
from jaxnerf.nerf import fields
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import sampling
from jaxnerf.data import batching
from jaxnerf.metrics import lpips
from jaxnerf.errors import ConfigError


def base_config():
  """Defaults: the NeRF paper's Blender settings on the built-in demo scene."""
  config = ml_collections.ConfigDict()
  config.data = _data_defaults()
  config.model = _model_defaults()
  config.occupancy = _occupancy_defaults()
  config.views = _views_defaults()
  config.loss = _loss_defaults()
  config.train = _train_defaults()
  config.eval = _eval_defaults()
  return config


def _data_defaults():
  """What scene and how it is loaded; the fields of one format in its own subgroup."""
  data = ml_collections.ConfigDict()
  data.dataset = "blender"
  data.data_dir = jaxnerf.DEMO_SCENE
  data.factor = 1  # integer image downsampling
  data.white_background = True  # composite RGBA onto white (else black), and render onto it
  data.near = 2.0
  data.far = 6.0
  data.scene_box = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)  # min xyz, max xyz: where hash fields live
  data.pixel_center = True  # rays through pixel centres (the NeRF paper's code used corners)
  # LLFF only:
  data.llff_hold = 8  # every llff_hold-th photo (0, 8, 16, ...) is held out for test and val
  data.ndc = False  # sample forward-facing scenes in normalised device coordinates (near 0, far 1)
  data.spherify = False  # recentre inward-facing 360-degree captures on a sphere (use with ndc False)
  # transforms.json captures (Instant-NGP, nerfstudio; data.dataset = "transforms"):
  data.transforms = ml_collections.ConfigDict()
  data.transforms.hold = 8  # every hold-th frame is held out for test and val, unless the file lists a split
  data.transforms.normalize = True  # orient (mean up to +z), centre and scale (cameras within radius 1)
  data.transforms.centre = "auto"  # "axes" (point nearest the optical axes), "cameras" (their mean), "auto"
  data.transforms.near = -1.0  # ray bounds in the normalised scene; negative: from the camera layout
  data.transforms.far = -1.0
  # > 0: instead of data.factor, the integer factor that brings the photos' long side nearest this many pixels
  data.transforms.long_side = 0
  return data


def _model_defaults():
  """The sampler and the field, with a subgroup for each kind of sampler and field."""
  model = ml_collections.ConfigDict()
  model.sampler = "hierarchical"  # "hierarchical" (NeRF), "proposal" (mip-NeRF 360) or "mip" (mip-NeRF)
  model.field = "mlp"  # the field with colour, a name in nerf/fields.py: "mlp" (NeRF), "hash" (Instant-NGP)
  model.density_noise = 0.0  # std of noise added to raw density while training
  model.compute_dtype = "float32"  # "bfloat16": MLP matmuls in bfloat16, float32 accumulation and params
  # Unbounded scenes (mip-NeRF 360): fields see space beyond radius 1 contracted into radius 2 (contraction.py),
  # hash fields then cover all of space instead of data.scene_box.
  model.contraction = False
  # First samples evenly spaced in "linear" t, "disparity" 1/t, or "linear_then_disparity" (beyond t = 1)
  model.spacing = "linear"

  model.hierarchical = ml_collections.ConfigDict()
  model.hierarchical.num_coarse_samples = 64
  model.hierarchical.num_fine_samples = 128  # 0: coarse level only
  model.hierarchical.lindisp = False  # sample linearly in disparity instead of depth

  model.proposal = ml_collections.ConfigDict()
  model.proposal.num_samples = (64,)  # intervals of each density-only proposal level, coarse to fine
  model.proposal.num_final_samples = 32  # intervals where the field with colour is evaluated
  model.proposal.num_levels = 5  # hash encoding of the proposal fields, see model.hash
  model.proposal.features_per_level = 2
  model.proposal.log2_table_size = 17
  model.proposal.min_resolution = 16
  model.proposal.max_resolution = 128
  model.proposal.width = 16

  model.mip = ml_collections.ConfigDict()  # cones, frustum Gaussians, one MLP shared by both levels
  model.mip.num_coarse_samples = 128  # stratified intervals
  model.mip.num_fine_samples = 128  # intervals resampled from the coarse level's blurred weights
  model.mip.resample_padding = 0.01  # added to every blurred weight before resampling

  # Each field type's settings, config.model.<name>, from its module (nerf/fields.py).
  for name, field_type in fields.FIELDS.items():
    model[name] = field_type.default_config()
  return model


def _occupancy_defaults():
  """A grid of the finest field's density over data.scene_box, which lets renders and training skip empty space
  (nerf/occupancy.py)."""
  occupancy = ml_collections.ConfigDict()
  occupancy.resolution = 128  # cells per axis; kept in the training state, refreshed while training
  occupancy.update_every = 16  # steps between refreshes
  occupancy.cells_per_update = 2**18  # cells refreshed per update (a sweep; 128^3 takes 8 updates)
  occupancy.decay = 0.95  # every cell's density decays by this factor per update
  occupancy.threshold = 0.01  # occupied: absorbs this much light across a cell (or density above the mean)
  occupancy.skip_empty = False  # renders (eval, videos, validation) evaluate fields in occupied cells only
  occupancy.skip_budget = 0.125  # samples per field call when skipping, as a fraction of a chunk's samples
  # Renders that skip empty space evaluate the finest level in this many groups of samples, nearest first, and
  # stop along rays whose transmittance has fallen below min_transmittance (early ray termination).
  occupancy.render_stages = 4
  occupancy.min_transmittance = 1e-4
  # Training evaluates fields in occupied cells only (after the grid's first sweep), in one call per level of at
  # most this fraction of the level's samples (coarse to fine, the last entry for the rest); a batch whose occupied
  # samples overflow it evaluates all samples of that level (logged as skip_overflow).
  occupancy.skip_in_training = False
  occupancy.train_skip_budgets = (0.5,)
  return occupancy


def _views_defaults():
  """Learned corrections of each training view (nerf/view_corrections.py), for real captures; held-out views keep
  their given poses and colours."""
  views = ml_collections.ConfigDict()
  views.refine_poses = False  # a rotation and a translation of each training camera
  views.pose_lr_init = 1e-3  # their own learning rate, log-linear to pose_lr_final over train.max_steps
  views.pose_lr_final = 1e-5
  # The pose rate eased in from 0 over this many first steps (a sine ramp), so that the field has a first fit of the
  # photos before poses move: on the perturbed demo, 26.46 dB with 250 against 23.95 with none (docs/captures.md).
  views.pose_delay_steps = 250
  views.color_map = False  # an affine colour map of each training photo (exposure, white balance)
  views.color_map_lr_init = 1e-3
  views.color_map_lr_final = 1e-5
  # NeRF-W's per-photo appearance codes of this many values, into the colour branch of the fields with colour,
  # learned with the fields (0: none); held-out views get the mean code (nerf/model.py, AppearanceCodes).
  views.embedding_dim = 0
  return views


def _loss_defaults():
  """Weights of the loss terms."""
  loss = ml_collections.ConfigDict()
  loss.coarse_rgb_weight = 1.0  # colour loss of earlier levels that render colour (NeRF's coarse level)
  loss.interlevel_weight = 1.0  # proposal levels (mip-NeRF 360)
  loss.distortion_weight = 0.0  # the finest level's weight distribution (mip-NeRF 360)
  return loss


def _train_defaults():
  """Optimisation, batching, checkpointing and logging."""
  train = ml_collections.ConfigDict()
  train.seed = 0
  train.max_steps = 500_000
  train.batch_size = 4096  # rays per step
  train.micro_batches = 1  # a step's gradient over this many parts of the batch in turn: less memory
  train.batching = "all_images"  # or "single_image": each batch from one random training image
  train.precrop_steps = 0  # sample only the image centre for this many first steps
  train.precrop_fraction = 0.5
  train.lr_init = 5e-4
  train.lr_final = 5e-6  # log-linear decay from lr_init to lr_final over max_steps
  train.lr_delay_steps = 0  # warm-up: scale the rate by lr_delay_mult, easing to 1 over these steps
  train.lr_delay_mult = 1.0
  train.grad_max_norm = 0.0  # clip gradients to this global norm; 0 disables
  train.adam_b1 = 0.9
  train.adam_b2 = 0.999
  train.adam_eps = 1e-7
  train.weight_decay = 0.0  # decoupled weight decay of the MLPs' kernels (not the hash tables)
  train.random_background = False  # composite transparent training pixels onto random colours
  train.max_nonfinite_steps = 20  # stop after this many steps in a row with a non-finite loss or gradient
  train.checkpoint_every = 10_000
  train.keep_checkpoints = 3
  train.log_every = 100
  train.val_every = 25_000  # TensorBoard render of one validation view; 0 disables
  return train


def _eval_defaults():
  """Rendering and scoring the held-out views."""
  evaluation = ml_collections.ConfigDict()
  evaluation.split = "test"
  evaluation.stride = 1  # render every stride-th view of the split
  evaluation.chunk = 2048  # rays per device call when rendering; bounds memory (paper model: ~2.2 GB)
  evaluation.write_depth = True
  # Fit each held-out camera's pose to its photo, the field frozen, before scoring (run/pose_alignment.py): for
  # runs that refine their training poses, whose scene frame is pinned to the given cameras only on average.
  evaluation.align_poses_steps = 0  # Adam steps per view; 0 scores the given poses
  evaluation.align_rays = 4096  # pixels per step
  evaluation.lpips_net = "alex"  # LPIPS backbone in metrics.json: "alex", "vgg", or "" to skip LPIPS
  return evaluation


def fast_config():
  """base_config() with the fast mode's defaults: a hash-grid field behind one density-only proposal level, the
  distortion loss, Instant-NGP's optimiser settings (a high rate with warm-up, Adam with beta2 0.99 and a tiny
  epsilon, weight decay of the MLP kernels), random backgrounds behind transparent pixels, and renders that skip
  empty space. The fast configs start from it."""
  config = base_config()
  config.model.sampler = "proposal"
  config.model.field = "hash"
  config.model.proposal.num_samples = (64,)
  config.model.proposal.num_final_samples = 32
  config.model.proposal.max_resolution = 128
  config.loss.distortion_weight = 0.002
  config.train.lr_init = 1e-2
  config.train.lr_final = 1e-4
  config.train.lr_delay_steps = 100
  config.train.lr_delay_mult = 0.01
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.train.weight_decay = 1e-6
  config.train.random_background = True
  config.occupancy.skip_empty = True
  # On lego 5-7% of the proposal's samples and 33-35% of the final samples fall in occupied cells.
  config.occupancy.skip_in_training = True
  config.occupancy.train_skip_budgets = (0.1, 0.4)
  return config


def has_field(config, path):
  """Whether a dotted path such as "train.batch_size" names a field of the config."""
  node = config
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def validate(config, device_count=1):
  """Raise ConfigError for values that cannot work; device_count is the number of devices a training batch is
  split over (train.py's; 1 where nothing is trained: eval, render and export may run on other devices)."""
  t, m, d = config.train, config.model, config.data
  checks = [
      (t.batch_size > 0 and t.batch_size % device_count == 0, "train.batch_size",
       f"a positive multiple of the {device_count} device(s) the batch is split over, got {t.batch_size}"),
      (t.micro_batches >= 1 and t.batch_size % (t.micro_batches * device_count) == 0, "train.micro_batches",
       f"a divisor of the {t.batch_size // max(device_count, 1)} rays per device (train.batch_size {t.batch_size} over "
       f"{device_count} device(s)), got {t.micro_batches}"),
      (t.max_steps > 0, "train.max_steps", f"a positive number of steps, got {t.max_steps}"),
      (t.checkpoint_every > 0, "train.checkpoint_every", f"a positive interval, got {t.checkpoint_every}"),
      (t.log_every > 0, "train.log_every", f"a positive interval, got {t.log_every}"),
      (t.max_nonfinite_steps > 0, "train.max_nonfinite_steps", f"at least 1, got {t.max_nonfinite_steps}"),
      (t.keep_checkpoints >= 1, "train.keep_checkpoints", f"at least 1, got {t.keep_checkpoints}"),
      (t.precrop_steps >= 0 and 0.0 < t.precrop_fraction <= 1.0, "train.precrop_steps/precrop_fraction",
       f"0 or more steps and a fraction in (0, 1], got {t.precrop_steps} and {t.precrop_fraction}"),
      (t.lr_init > 0 and t.lr_final > 0, "train.lr_init/lr_final", "positive learning rates"),
      (min(config.views.pose_lr_init, config.views.pose_lr_final, config.views.color_map_lr_init,
           config.views.color_map_lr_final) > 0, "views.pose_lr_*/color_map_lr_*", "positive learning rates"),
      (config.views.pose_delay_steps >= 0, "views.pose_delay_steps", f"0 or more, got {config.views.pose_delay_steps}"),
      (config.views.embedding_dim >= 0, "views.embedding_dim", f"0 or more, got {config.views.embedding_dim}"),
      (not (config.views.refine_poses and d.ndc), "views.refine_poses",
       "False with data.ndc (poses are refined before rays are mapped to NDC, which the host does)"),
      (m.hierarchical.num_coarse_samples >= 2, "model.hierarchical.num_coarse_samples",
       f"at least 2, got {m.hierarchical.num_coarse_samples}"),
      (m.hierarchical.num_fine_samples >= 0, "model.hierarchical.num_fine_samples",
       f"0 or more, got {m.hierarchical.num_fine_samples}"),
      (all(n >= 2 for n in (*m.proposal.num_samples, m.proposal.num_final_samples)),
       "model.proposal.num_samples/num_final_samples", "at least 2 intervals per level"),
      (m.mip.num_coarse_samples >= 2 and m.mip.num_fine_samples >= 2, "model.mip.num_coarse_samples/num_fine_samples",
       "at least 2 intervals per level"),
      (m.mip.resample_padding >= 0, "model.mip.resample_padding", f"0 or more, got {m.mip.resample_padding}"),
      (len(d.scene_box) == 6 and all(d.scene_box[i] < d.scene_box[i + 3] for i in range(3)), "data.scene_box",
       f"(min_x, min_y, min_z, max_x, max_y, max_z) with each min below its max, got {d.scene_box}"),
      (d.factor >= 1, "data.factor", f"an integer >= 1, got {d.factor}"),
      (d.llff_hold >= 2, "data.llff_hold", f"an integer >= 2, got {d.llff_hold}"),
      (0 <= d.near < d.far, "data.near/far", f"0 <= near < far, got {d.near} and {d.far}"),
      (config.eval.chunk > 0 and config.eval.stride > 0, "eval.chunk/stride", "positive values"),
      (config.eval.align_poses_steps >= 0 and config.eval.align_rays > 0, "eval.align_poses_steps/align_rays",
       f"0 or more steps of a positive number of pixels, got {config.eval.align_poses_steps} and "
       f"{config.eval.align_rays}"),
      (not (config.eval.align_poses_steps and d.ndc), "eval.align_poses_steps",
       "0 with data.ndc (poses are fitted before rays are mapped to NDC)"),
      (config.occupancy.resolution >= 1 and config.occupancy.update_every >= 1 and
       config.occupancy.cells_per_update >= 1, "occupancy.resolution/update_every/cells_per_update",
       "positive values"),
      (0.0 < config.occupancy.decay <= 1.0, "occupancy.decay", f"in (0, 1], got {config.occupancy.decay}"),
      (0.0 < config.occupancy.threshold < 1.0, "occupancy.threshold",
       f"an opacity in (0, 1), got {config.occupancy.threshold}"),
      (config.occupancy.render_stages >= 1 and 0.0 <= config.occupancy.min_transmittance < 1.0,
       "occupancy.render_stages/min_transmittance",
       f"1 or more stages and a transmittance in [0, 1), got {config.occupancy.render_stages} and "
       f"{config.occupancy.min_transmittance}"),
      (0.0 < config.occupancy.skip_budget <= 1.0, "occupancy.skip_budget",
       f"a fraction in (0, 1], got {config.occupancy.skip_budget}"),
      (len(config.occupancy.train_skip_budgets) > 0
       and all(0.0 < b <= 1.0 for b in config.occupancy.train_skip_budgets),
       "occupancy.train_skip_budgets", f"fractions in (0, 1], got {config.occupancy.train_skip_budgets}"),
      (m.spacing in sampling.SPACINGS, "model.spacing", f"one of {sampling.SPACINGS}, got {m.spacing!r}"),
      (not m.hierarchical.lindisp or m.spacing in ("linear", "disparity"), "model.hierarchical.lindisp",
       f"False with model.spacing={m.spacing!r} (lindisp is the 'disparity' spacing)"),
  ]
  for ok, field, expected in checks:
    if not ok:
      raise ConfigError(f"config.{field}: expected {expected}")
  # Values whose allowed set a module owns are checked by that module.
  batching.check_mode(t.batching)
  lpips.check_net(config.eval.lpips_net, allow_none=True)
  model_lib.build_model(config)  # the builders check the model's names and the fields' settings
