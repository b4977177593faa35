"""Camera rays: one ray per pixel of a camera with a pinhole or a distorting lens.

Conventions (Blender / OpenGL): the camera looks down its -z axis, +y is up and +x is right; image rows grow
downwards. `cam_to_world` matrices are [..., 3, 4] (rotation | translation). Directions are *not* normalised:
their camera-space z component is -1, so a sample distance `t` along a ray is the depth in front of the camera,
which is how Blender's near/far bounds (2 and 6) are defined. `viewdirs` are the unit-length directions fed to
the network. `radii` make each ray a cone (mip-NeRF): the radius of the pixel's footprint at t = 1.

Every function takes `xnp` (numpy or jax.numpy) so that the same code builds rays on the host for data loading
and inside jitted functions.
"""
from typing import NamedTuple, Optional

import numpy as np


class Rays(NamedTuple):
  origins: "np.ndarray"  # [..., 3]
  directions: "np.ndarray"  # [..., 3], camera-space z = -1
  viewdirs: "np.ndarray"  # [..., 3], unit length
  radii: Optional["np.ndarray"] = None  # [..., 1], the cone's radius at t = 1 (mip-NeRF), or None for thin rays


def pixel_grid(height, width, xnp=np):
  """Integer pixel coordinates of an image.

  Returns:
    x, y: [height, width] float32 column and row indices.
  """
  x, y = xnp.meshgrid(xnp.arange(width, dtype=xnp.float32), xnp.arange(height, dtype=xnp.float32), indexing="xy")
  return x, y


CAMERA_MODELS = ("pinhole", "opencv", "opencv_fisheye")
# Distortion coefficients of a view, one layout for every model: OpenCV's radial-tangential model uses k1, k2, k3,
# p1, p2 (k4 = 0); the fisheye model uses k1..k4 (p1 = p2 = 0).
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
UNDISTORT_ITERATIONS = 10


def distort_opencv(x, y, distortion, xnp=np):
  """OpenCV's radial-tangential model on normalised image coordinates (x right, y down, at depth 1).

  Args:
    x, y: [...] undistorted coordinates.
    distortion: [..., 6] coefficients in DISTORTION_KEYS order.

  Returns:
    the distorted x, y and the Jacobian entries d(xd)/dx, d(xd)/dy, d(yd)/dx, d(yd)/dy, all [...].
  """
  k1, k2, k3, _, p1, p2 = (distortion[..., i] for i in range(6))
  r2 = x * x + y * y
  radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
  radial_r2 = k1 + r2 * (2.0 * k2 + 3.0 * r2 * k3)  # d radial / d r2
  xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
  yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
  xd_x = radial + 2.0 * x * x * radial_r2 + 2.0 * p1 * y + 6.0 * p2 * x
  xd_y = 2.0 * x * y * radial_r2 + 2.0 * p1 * x + 2.0 * p2 * y
  yd_x = 2.0 * x * y * radial_r2 + 2.0 * p2 * y + 2.0 * p1 * x
  yd_y = radial + 2.0 * y * y * radial_r2 + 2.0 * p2 * x + 6.0 * p1 * y
  return xd, yd, xd_x, xd_y, yd_x, yd_y


def undistort(xd, yd, distortion, camera_model, iterations=UNDISTORT_ITERATIONS, xnp=np):
  """Invert a lens model by Newton's method: the normalised pinhole coordinates that the lens maps to (xd, yd).

  Args:
    xd, yd: [...] distorted normalised image coordinates ((pixel - principal point) / focal, y down).
    distortion: [..., 6] coefficients in DISTORTION_KEYS order.
    camera_model: "opencv" (radial-tangential, Newton in 2D from the distorted point) or "opencv_fisheye"
      (equidistant: Newton on the angle from the axis, then tan of it).

  Returns:
    x, y: [...] undistorted coordinates, in the dtype of xd.
  """
  if camera_model == "opencv":
    x, y = xd, yd
    for _ in range(iterations):
      fx, fy, fx_x, fx_y, fy_x, fy_y = distort_opencv(x, y, distortion, xnp=xnp)
      fx, fy = fx - xd, fy - yd
      determinant = fx_x * fy_y - fx_y * fy_x
      safe = xnp.where(xnp.abs(determinant) > 1e-12, determinant, 1.0)
      x = x - xnp.where(xnp.abs(determinant) > 1e-12, (fx * fy_y - fy * fx_y) / safe, 0.0)
      y = y - xnp.where(xnp.abs(determinant) > 1e-12, (fy * fx_x - fx * fy_x) / safe, 0.0)
    return x, y
  if camera_model == "opencv_fisheye":
    k1, k2, k3, k4 = (distortion[..., i] for i in range(4))
    radius_d = xnp.sqrt(xd * xd + yd * yd)
    theta = xnp.minimum(radius_d, np.pi / 2 - 1e-3)
    for _ in range(iterations):
      t2 = theta * theta
      residual = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - radius_d
      slope = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
      theta = xnp.clip(theta - residual / slope, 0.0, np.pi / 2 - 1e-3)
    # tan(theta) / theta_d -> 1 at the centre, where the ratio would be 0 / 0.
    near_centre = radius_d < 1e-7
    scale = xnp.where(near_centre, 1.0, xnp.tan(theta) / xnp.where(near_centre, 1.0, radius_d))
    return (xd * scale).astype(xd.dtype), (yd * scale).astype(yd.dtype)
  raise ValueError(f"camera model {camera_model!r}: expected one of {CAMERA_MODELS}")


def lens_rays(x, y, intrinsics, cam_to_world, distortion=None, camera_model="pinhole", pixel_center=True, xnp=np):
  """Rays through pixels of a camera with per-view intrinsics and a lens model.

  Args:
    x, y: [...] pixel column and row indices (float).
    intrinsics: [..., 4] (fx, fy, cx, cy) in pixels, broadcastable against x.
    cam_to_world: [..., 3, 4].
    distortion: [..., 6] coefficients in DISTORTION_KEYS order, or None for a pinhole camera.
    camera_model: one of CAMERA_MODELS; pixel coordinates are undistorted iteratively in their own dtype.
    pixel_center: shoot rays through pixel centres (x + 0.5) rather than pixel corners. The original NeRF code
      used corners; centres are geometrically right.

  Returns:
    Rays with origins, directions and viewdirs of shape [..., 3] and radii [..., 1]: mip-NeRF's cone through
    the pixel, whose radius 1 / (sqrt(3) f) at t = 1 (f the mean focal length) gives its cross-section the
    variance of the pixel's square footprint (pixel width 1 / f at camera depth 1; mip-NeRF's 2 / sqrt(12) times
    it).
  """
  offset = 0.5 if pixel_center else 0.0
  fx, fy, cx, cy = (intrinsics[..., i] for i in range(4))
  u, v = (x + offset - cx) / fx, (y + offset - cy) / fy
  if camera_model != "pinhole":
    u, v = undistort(u, v, distortion, camera_model, xnp=xnp)
  cam_dirs = xnp.stack([u, -v, -xnp.ones_like(u)], axis=-1)  # [..., 3]
  rotation = cam_to_world[..., :3, :3]
  directions = xnp.sum(cam_dirs[..., None, :] * rotation, axis=-1)
  origins = xnp.broadcast_to(cam_to_world[..., :3, 3], directions.shape)
  viewdirs = directions / xnp.linalg.norm(directions, axis=-1, keepdims=True)
  radii = (xnp.ones_like(u) / (np.sqrt(3.0) * 0.5 * (fx + fy)))[..., None].astype(directions.dtype)
  return Rays(origins=origins, directions=directions, viewdirs=viewdirs, radii=radii)


def image_rays(height, width, focal, cam_to_world, pixel_center=True, xnp=np):
  """All rays of one image, principal point at the image centre.

  Args:
    cam_to_world: [3, 4].

  Returns:
    Rays of shape [height, width, 3].
  """
  x, y = pixel_grid(height, width, xnp=xnp)
  intrinsics = xnp.asarray([focal, focal, width / 2.0, height / 2.0], xnp.float32)
  return lens_rays(x, y, intrinsics, cam_to_world, pixel_center=pixel_center, xnp=xnp)


def to_ndc(rays, width, height, focal, near=1.0, xnp=np):
  """Map rays of a forward-facing camera into normalised device coordinates (NDC).

  The scene's view frustum (camera at the origin looking down -z, as after LLFF recentring) becomes the cube
  [-1, 1]^3: a point at depth z (z < 0) goes to (-2 f / W * x / z, -2 f / H * y / z, 1 + 2 near / z), so the near
  plane z = -near maps to -1 and infinite depth to +1. Rays are first moved to start on the near plane; the NDC
  ray then covers the rest of the frustum for t in [0, 1] (t = 1 is infinitely far), so a forward-facing scene
  of unbounded depth is sampled with near = 0, far = 1. `viewdirs` are kept in world space for the network.

  NDC rays of one camera are nearly parallel, so mip-NeRF sizes their cones by the spacing of neighbouring
  pixels' NDC origins: (dx + dy) / 2 * 2 / sqrt(12). Radii are mapped to that, in closed form for a camera whose
  axes are the NDC frame's (the assumption of NDC itself): a pixel step of 1 / focal in x moves the NDC origin by
  2 / W |near + o_z| / (near |d_z|), and in y by 2 / H times the same.

  Args:
    rays: Rays with [..., 3] origins and directions in the camera-aligned world frame (directions with z < 0).
    width, height, focal: the pinhole camera in pixels (only the ratios W / f and H / f matter).
    near: depth of the near plane.

  Returns:
    Rays with NDC origins and directions, [..., 3] (and radii [..., 1] where `rays` have radii).
  """
  origins, directions = rays.origins, rays.directions
  ox, oy, oz = origins[..., 0], origins[..., 1], origins[..., 2]
  dx, dy, dz = directions[..., 0], directions[..., 1], directions[..., 2]
  t_near = -(near + oz) / dz
  ox, oy, oz = ox + t_near * dx, oy + t_near * dy, oz + t_near * dz
  sx, sy = -2.0 * focal / width, -2.0 * focal / height
  ndc_origins = xnp.stack([sx * ox / oz, sy * oy / oz, 1.0 + 2.0 * near / oz], axis=-1)
  ndc_directions = xnp.stack(
      [sx * (dx / dz - ox / oz), sy * (dy / dz - oy / oz), -2.0 * near / oz], axis=-1)
  radii = None
  if rays.radii is not None:
    # The pinhole radius is 1 / (sqrt(3) focal): focal * sqrt(3) * radius is the pixel count of the footprint.
    pixel_steps = np.sqrt(3.0) * focal * rays.radii[..., 0]
    spacing = pixel_steps * (1.0 / width + 1.0 / height) * xnp.abs(near + origins[..., 2]) / (near * xnp.abs(dz))
    radii = (spacing / np.sqrt(3.0))[..., None]
  return Rays(origins=ndc_origins, directions=ndc_directions, viewdirs=rays.viewdirs, radii=radii)
