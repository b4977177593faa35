"""Your own handheld capture (a transforms.json, as process_data.py writes it) on a 2-core CPU: the fast model
(hash-grid field, proposal sampling) with mip-NeRF 360's scene contraction and samples spaced in disparity far
away, so that the background beyond the cameras is modelled too; photos downsampled to about 250 pixels on the
long side; each training view's pose refined and its appearance learned; the held-out frames (every 8th) evaluated.

Usage: python train.py --config=configs/capture.py --config.data.data_dir=SCENE --workdir=DIR
       python eval.py  --config=configs/capture.py --config.data.data_dir=SCENE --workdir=DIR
"""
from jaxnerf.config import fast_config


def get_config():
  config = fast_config()
  config.data.dataset = "transforms"
  config.data.data_dir = ""  # required: a folder with transforms.json (or sparse/0) and the photos
  config.data.white_background = False  # photos have no alpha; black only shows behind transparent pixels
  config.data.transforms.long_side = 250  # pixels: chooses the downsampling factor, replacing data.factor
  # The scene is normalised (cameras within radius 1); near comes from the camera layout or COLMAP's points. The
  # contraction maps everything out to infinity into radius 2, so rays go far, and with disparity spacing the
  # range beyond distance 1 up to 1000 takes half of the first samples (1000 contracts to radius 1.999).
  config.data.transforms.far = 1e3
  config.model.contraction = True
  config.model.spacing = "linear_then_disparity"
  config.model.hash.num_levels = 12
  config.model.hash.log2_table_size = 17
  # The contracted space [-2, 2]^3 fills the grids, the unit ball (where the cameras are) half of each axis.
  config.model.hash.max_resolution = 1024
  config.train.max_steps = 5_000
  config.train.batch_size = 1024
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 0
  config.train.random_background = False
  # The opacity threshold is set for cells of the scene's scale; contracted cells far away hold much more space.
  config.occupancy.skip_empty = False
  # Phone captures: COLMAP's poses are off by a fraction of a degree and auto-exposure changes from photo to photo,
  # so each training view learns a pose correction and an appearance code (docs/captures.md: on the demo with
  # varied exposure, codes of 16 values scored 29.89 dB against the colour maps' 29.33).
  config.views.refine_poses = True
  config.views.embedding_dim = 16
  config.views.pose_delay_steps = 500  # a tenth of the run, as on the demo (250 of 2500 steps)
  config.eval.split = "test"  # the held-out frames (data.transforms.hold, or the file's test_filenames)
  config.eval.chunk = 8192
  return config
