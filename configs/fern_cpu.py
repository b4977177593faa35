"""Fern at 252x189 (images_8 halved by area averaging), sized to train on a 2-core CPU in under 15 minutes.

Reads the fern scene from ../shared/data/nerf_llff_data/fern beside the repository; elsewhere, point
--config.data.data_dir at an LLFF fern folder (poses_bounds.npy with images_8/ or images/).
"""
import os

from jaxnerf.config import base_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config():
  config = base_config()
  config.data.dataset = "llff"
  config.data.data_dir = os.path.join(REPO, "..", "shared", "data", "nerf_llff_data", "fern")
  config.data.factor = 16
  config.data.white_background = False
  config.data.ndc = True
  config.model.mlp.depth = 4
  config.model.mlp.width = 128
  config.model.mlp.skip_layer = 2
  config.model.mlp.view_width = 64
  config.model.hierarchical.num_coarse_samples = 32
  config.model.hierarchical.num_fine_samples = 32
  config.model.density_noise = 1.0
  config.train.max_steps = 4_000
  config.train.batch_size = 512
  config.train.lr_init = 5e-3
  config.train.lr_final = 5e-5
  config.train.checkpoint_every = 1000
  config.train.val_every = 2500
  config.eval.chunk = 4096
  return config
