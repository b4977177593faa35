"""mip-NeRF 360's scene contraction (Barron et al. 2022): unbounded space mapped into the ball of radius 2.

contract(x) = x for |x| <= 1, (2 - 1/|x|) x / |x| beyond: the unit ball is kept as it is and the rest of space is
squeezed into the shell 1 < |y| < 2, the radius in disparity (2 - 1/|x|), so that a field of bounded resolution
covers an unbounded scene, finely near the centre and ever more coarsely far away. It is continuous with a
continuous Jacobian (both are the identity at |x| = 1). mip-NeRF's Gaussians go through its linearisation at their
means (the mean contracted, the covariance J C J^T), as mip-NeRF 360 does.
"""
import jax.numpy as jnp

# Contracted points lie in the ball, hence the cube, of this radius.
CONTRACTED_RADIUS = 2.0


def _radius_at_least_one(x):
  """max(|x|, 1) for points x [..., 3] -> [..., 1], without overflow for huge points and with finite gradients
  everywhere (also at x = 0, where |x| has none). With r = max(|x|, 1) the formulas beyond the unit ball give the
  identity inside it, exactly."""
  scale = jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), 1.0)
  # Beyond the unit cube the clamp is inactive (the scaled squared norm is >= 1 > scale^-2); inside, scale = 1.
  return scale * jnp.sqrt(jnp.maximum(jnp.sum((x / scale) ** 2, axis=-1, keepdims=True), scale ** -2))


def contract(x):
  """Points [..., 3] -> [..., 3] contracted points, |contract(x)| < 2."""
  r = _radius_at_least_one(x)
  return (2.0 - 1.0 / r) * (x / r)


def inverse_contract(y):
  """The inverse of `contract`: points [..., 3] with |y| < 2 -> [..., 3] (|y| >= 2, the image of infinity, gives
  infinite or non-finite coordinates)."""
  r = _radius_at_least_one(y)
  # Beyond radius 2 the formula would give finite points on the opposite side: give infinity instead.
  return y / jnp.where(r < 2.0, r * (2.0 - r), 0.0)


def contract_jacobian(x):
  """The Jacobian of `contract` at points [..., 3] -> [..., 3, 3]: the identity inside the unit ball; beyond it
  (2 r - 1) / r^2 across the radial direction u and 1 / r^2 along it (r = |x|), that is, with r = max(|x|, 1),
  (2 r - 1) / r^2 I + 2 (1 - r) / r^2 u u^T."""
  r = _radius_at_least_one(x)[..., None]  # [..., 1, 1]
  u = x[..., :, None] / r  # [..., 3, 1]
  return (2.0 * r - 1.0) / r ** 2 * jnp.eye(3, dtype=x.dtype) + 2.0 * (1.0 - r) / r ** 2 * (u * jnp.swapaxes(u, -1, -2))


def contract_gaussians(means, covs):
  """Gaussians through the contraction's linearisation at their means: means [..., 3] and full covariances
  [..., 3, 3] -> contract(means) [..., 3] and J covs J^T [..., 3, 3].

  Full covariances are needed: beyond the unit ball J mixes the coordinates (it squeezes the radial direction far
  more than the others), so a covariance's diagonal alone does not give the contracted one's diagonal."""
  jacobian = contract_jacobian(means)
  return contract(means), jacobian @ covs @ jnp.swapaxes(jacobian, -1, -2)


def unit_coordinates(points, scene_box, contracted):
  """Points mapped to the unit cube where hash grids (and occupancy grids) live, and whether they lie inside it.

  Without contraction the scene box maps to the cube and points outside the box fall outside it (their fields are
  empty there); with contraction, contract(points) in the ball of radius 2 maps from [-2, 2]^3 and every point is
  inside.

  Args:
    points: [..., 3].
    scene_box: (min_x, min_y, min_z, max_x, max_y, max_z), used without contraction.
    contracted: apply mip-NeRF 360's scene contraction (`contract`) instead of the scene box.

  Returns:
    [..., 3] coordinates (outside [0, 1] for points outside the box) and [...] bool.
  """
  if contracted:
    radius = CONTRACTED_RADIUS
    return (contract(points) + radius) / (2.0 * radius), jnp.ones(points.shape[:-1], bool)
  lo, hi = jnp.asarray(scene_box[:3], points.dtype), jnp.asarray(scene_box[3:], points.dtype)
  x = (points - lo) / (hi - lo)
  return x, jnp.all((x >= 0.0) & (x <= 1.0), axis=-1)


def points_at_unit_coordinates(x, scene_box, contracted):
  """The inverse of `unit_coordinates`: [..., 3] coordinates in the unit cube -> [..., 3] points (with contraction,
  coordinates outside the inscribed ball of radius 1/2 around the cube's centre map to infinity)."""
  if contracted:
    radius = CONTRACTED_RADIUS
    return inverse_contract(x * (2.0 * radius) - radius)
  lo, hi = jnp.asarray(scene_box[:3], x.dtype), jnp.asarray(scene_box[3:], x.dtype)
  return lo + x * (hi - lo)
