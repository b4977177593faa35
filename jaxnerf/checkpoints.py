"""Orbax checkpoints of the training state: written atomically, the last few kept, restored into a template."""
import os

import orbax.checkpoint as ocp


def manager(directory, keep=3):
  """A CheckpointManager for `directory` (relative paths are resolved against the current directory, as orbax
  needs absolute ones). Saves are synchronous so a checkpoint is complete (or absent) when save() returns."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(mngr, step, state):
  mngr.save(step, args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()


def restore_latest(mngr, template):
  """The latest checkpoint restored with the structure, shapes and dtypes of `template`, or None if there is
  none."""
  step = mngr.latest_step()
  if step is None:
    return None
  return mngr.restore(step, args=ocp.args.StandardRestore(template))
