"""The one config schema. Files in configs/ start from `base_config()` and change values, never add fields.

Groups: `data` (what scene and how it is loaded), `model` (network and sampling), `train` (optimisation,
batching, checkpointing, logging), `eval` (test rendering).
"""
import ml_collections

import jaxnerf


def base_config():
  """Defaults: the NeRF paper's Blender settings on the built-in demo scene."""
  config = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.dataset = "blender"
  config.data.data_dir = jaxnerf.DEMO_SCENE
  config.data.factor = 1  # integer image downsampling
  config.data.white_background = True  # composite RGBA onto white (else black), and render onto it
  config.data.near = 2.0
  config.data.far = 6.0
  config.data.pixel_center = True  # rays through pixel centres (the NeRF paper's code used corners)

  config.model = ml_collections.ConfigDict()
  config.model.depth = 8
  config.model.width = 256
  config.model.skip_layer = 4  # the encoded input is concatenated back after this layer
  config.model.view_width = 128
  config.model.use_viewdirs = True
  config.model.position_min_deg = 0
  config.model.position_max_deg = 10
  config.model.direction_min_deg = 0
  config.model.direction_max_deg = 4
  config.model.num_coarse_samples = 64
  config.model.num_fine_samples = 128  # 0: coarse network only
  config.model.lindisp = False  # sample linearly in disparity instead of depth
  config.model.density_noise = 0.0  # std of noise added to raw density while training

  config.train = ml_collections.ConfigDict()
  config.train.seed = 0
  config.train.max_steps = 500_000
  config.train.batch_size = 4096  # rays per step
  config.train.batching = "all_images"  # or "single_image": each batch from one random training image
  config.train.precrop_steps = 0  # sample only the image centre for this many first steps
  config.train.precrop_fraction = 0.5
  config.train.lr_init = 5e-4
  config.train.lr_final = 5e-6  # log-linear decay from lr_init to lr_final over max_steps
  config.train.lr_delay_steps = 0  # warm-up: scale the rate by lr_delay_mult, easing to 1 over these steps
  config.train.lr_delay_mult = 1.0
  config.train.grad_max_norm = 0.0  # clip gradients to this global norm; 0 disables
  config.train.coarse_loss_weight = 1.0
  config.train.checkpoint_every = 10_000
  config.train.keep_checkpoints = 3
  config.train.log_every = 100
  config.train.val_every = 25_000  # TensorBoard render of one validation view; 0 disables

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "test"
  config.eval.stride = 1  # render every stride-th view of the split
  config.eval.chunk = 8192  # rays per device call when rendering; bounds memory
  config.eval.write_depth = True
  return config
