"""Data parallelism over every device of every process: one 1-D mesh, rays split along it, the rest replicated.

Arrays passed to the jitted train and render steps are global jax.Arrays on this mesh, so the same code runs on
one CPU, a multi-GPU host and a TPU pod; XLA inserts the all-reduce of gradients and the all-gather of renders.
"""
import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

AXIS = "data"


def data_mesh():
  """The mesh [jax.device_count()] named AXIS over all devices, grouped by process: process p's devices hold
  one contiguous block of every batch (the block its own data fills)."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.array(devices), (AXIS,))


def replicated(mesh):
  return NamedSharding(mesh, PartitionSpec())


def split(mesh):
  """Leading (batch) axis split over the mesh."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def local_batch_size(global_batch_size):
  """Rays this process contributes to a global batch: its devices' share."""
  return global_batch_size * jax.local_device_count() // jax.device_count()


def from_process_batches(mesh, local_tree, global_size):
  """Global arrays [global_size, ...] from each process's block [local_batch_size(global_size), ...]; the
  blocks of processes 0, 1, ... are concatenated in that order."""
  sharding = split(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x, (global_size, *x.shape[1:])),
                      local_tree)


def from_same_on_all(mesh, tree):
  """Global arrays split over the mesh from [n, ...] numpy arrays that every process holds in full (n a multiple
  of the device count)."""
  sharding = split(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree)


def spread_over(mesh, always=False):
  """A function that splits a pytree's leading axis over the mesh inside a jitted function, as a batch is split
  (without it every device would compute on all of it); arrays whose length the mesh does not divide are left
  as they are unless `always` (then their length must divide)."""
  def spread(tree):
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, split(mesh))
                        if always or a.shape[0] % mesh.size == 0 else a, tree)

  return spread
