"""Random training batches of rays.

A batch depends only on (seed, stream, step), so a resumed run sees exactly the batches the uninterrupted run
would have, and every process of a multi-host job can draw its own share from its own stream.
"""
import numpy as np

from jaxnerf.data.views import Views
from jaxnerf.errors import ConfigError

BATCHING_MODES = ("all_images", "single_image")


def check_mode(mode):
  """ConfigError naming config.train.batching unless `mode` is one of BATCHING_MODES."""
  if mode not in BATCHING_MODES:
    raise ConfigError(f"config.train.batching: expected one of {BATCHING_MODES}, got {mode!r}")


class RayBatcher:
  """Draws batches of random pixels and their rays from a set of training views (from the views whose photos
  it holds, when they are a process's share)."""

  def __init__(self, views: Views, batch_size, mode="all_images", precrop_steps=0, precrop_fraction=0.5,
               seed=0, stream=0):
    check_mode(mode)
    self.views = views
    self.batch_size = batch_size
    self.mode = mode
    self.precrop_steps = precrop_steps
    self.precrop_fraction = precrop_fraction
    self.seed = seed
    self.stream = stream

  def __call__(self, step):
    """The batch for a training step.

    Returns:
      dict with "rays" (Rays of [batch_size, 3] float32 arrays), "rgb" ([batch_size, 3] float32), "view"
      ([batch_size] int32, the index of each ray's view among all views, drawn from those whose photos are held), and for views with transparency "alpha" ([batch_size]
      float32, see Views.alpha).
    """
    rng = np.random.default_rng([self.seed, self.stream, step])
    h, w = self.views.height, self.views.width
    if step < self.precrop_steps:
      # Early on, a centre crop keeps the first batches on the object, so a scene on a plain background
      # does not collapse to empty space.
      dh, dw = int(h * self.precrop_fraction / 2), int(w * self.precrop_fraction / 2)
      y0, y1, x0, x1 = h // 2 - dh, h // 2 + dh, w // 2 - dw, w // 2 + dw
    else:
      y0, y1, x0, x1 = 0, h, 0, w
    shape = (self.batch_size,)
    held = self.views.held_views()
    if self.mode == "all_images":
      row = rng.integers(0, len(held), shape)  # of the held photos
    else:
      row = np.full(shape, rng.integers(0, len(held)))
    y = rng.integers(y0, y1, shape)
    x = rng.integers(x0, x1, shape)
    view = held[row]
    batch = {"rays": self.views.pixel_rays(view, x, y), "rgb": self.views.images[row, y, x],
             "view": view.astype(np.int32)}
    if self.views.alpha is not None:
      batch["alpha"] = self.views.alpha[row, y, x]
    return batch
