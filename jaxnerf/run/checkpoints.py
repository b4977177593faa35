"""Orbax checkpoints of the training state: written atomically, the last few kept, restored into a template.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a process killed
during a save leaves the previous checkpoints usable; leftovers of such a save are removed on the next start.
Arrays are stored with tensorstore and metadata as JSON: nothing is unpickled on restore.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxnerf import storage
from jaxnerf.errors import WorkdirError

def manager(directory, keep=3, read_only=False):
  """A CheckpointManager for `directory`, a local path or a URL such as gs://bucket/run/checkpoints (relative
  paths are resolved against the current directory, as orbax needs absolute ones). Saves are synchronous so a checkpoint is complete (or absent) when save() returns.

  The writer's manager removes leftovers of interrupted saves when it opens; a `read_only` one (eval, render,
  export; never saved with) creates and removes nothing, so that it can open a run while train.py is in the middle
  of a save."""
  if read_only:  # not orbax's read_only mode, which logs a warning at every open
    options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True,
                                           cleanup_tmp_directories=True)
  return ocp.CheckpointManager(storage.absolute(directory), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def is_finite(state):
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state)
             if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating))


def save(mngr, step, state):
  """Save `state` as checkpoint `step`; a state with non-finite values is never written."""
  if not is_finite(state):
    raise FloatingPointError(f"step {step}: refusing to checkpoint a state with non-finite values")
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr, template, step=None, added_fields=()):
  """The latest checkpoint (or the one of `step`) restored with the structure, shapes and dtypes of
  `template`, or None if there is none. Fields of the template named in `added_fields` (added to the state after
  some checkpoints were written) keep the template's values where a checkpoint lacks them. Raises WorkdirError if `step` has no checkpoint, or if the checkpoint's
  parameters do not fit the template's (a checkpoint of another model); this is checked from the stored
  metadata, before any array is read."""
  if step is None:
    step = mngr.latest_step()
    if step is None:
      return None
  elif step not in mngr.all_steps():
    raise WorkdirError(f"{mngr.directory}: no checkpoint of step {step} (there are: "
                       f"{', '.join(map(str, sorted(mngr.all_steps()))) or 'none'})")
  metadata = mngr.item_metadata(step)
  stored = _param_shapes(metadata["params"])
  expected = _param_shapes(template.params)
  if stored != expected:
    name = sorted(set(stored) ^ set(expected)) or [k for k in sorted(stored) if stored[k] != expected[k]]
    raise WorkdirError(f"{mngr.directory}/{step}: checkpoint does not fit this config's model (parameter "
                       f"{name[0]}: {stored.get(name[0])} stored, {expected.get(name[0])} expected)")
  missing = [field.name for field in dataclasses.fields(template) if field.name not in metadata]
  if not missing:
    return mngr.restore(step, args=ocp.args.StandardRestore(template))
  if set(missing) - set(added_fields):
    raise WorkdirError(f"{mngr.directory}/{step}: checkpoint lacks {', '.join(missing)} of the training state")
  # Written before the fields in added_fields existed: those keep the template's values, all others are restored.
  stored_tree = mngr.restore(step, args=ocp.args.StandardRestore(None))
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
  leaves = []
  for path, leaf in paths_and_leaves:
    if path[0].name in missing:
      leaves.append(leaf)
      continue
    value = _find(stored_tree, path)
    if value is None:
      raise WorkdirError(f"{mngr.directory}/{step}: checkpoint lacks {jax.tree_util.keystr(path)}")
    value = np.asarray(value, leaf.dtype)
    leaves.append(jax.make_array_from_callback(leaf.shape, leaf.sharding, lambda index, value=value: value[index]))
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _find(tree, path):
  """The value at a key path (attribute, dict key or sequence index) in a restored tree of dicts and lists, or
  None if it is not there."""
  for key in path:
    if isinstance(key, jax.tree_util.SequenceKey):
      tree = tree[key.idx] if isinstance(tree, (list, tuple)) and key.idx < len(tree) else None
    else:
      name = key.name if isinstance(key, jax.tree_util.GetAttrKey) else key.key
      tree = tree.get(name) if isinstance(tree, dict) else None
    if tree is None:
      return None
  return tree


def _param_shapes(tree):
  """{'coarse/Dense_0/kernel': shape} for a nested dict of arrays or array metadata."""
  return {"/".join(str(k.key) for k in path): tuple(leaf.shape) for path, leaf in jax.tree.leaves_with_path(tree)}
