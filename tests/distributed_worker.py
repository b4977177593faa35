"""One process of a test run: train the tiny config, save this process's copies of the parameters, evaluate.

  python tests/distributed_worker.py WORKDIR MAX_STEPS [COORDINATOR_ADDRESS NUM_PROCESSES PROCESS_ID]

With JAXNERF_TEST_MODEL=fast in the environment it trains the fast model (tiny_fast_config) instead; with
JAXNERF_TEST_SKIP_EMPTY=1 training and renders skip empty space (test_train_eval.skipping_empty_space).

Writes WORKDIR/params_<process>.npz: for each parameter (named by its path), the copies on this process's
devices stacked [local devices, ...], to show that every replica is the same.
"""
import os
import sys

import jax
import numpy as np

from jaxnerf.runtime import distributed
from jaxnerf.run import evaluate as eval_lib
from jaxnerf.run import train as train_lib
from test_train_eval import skipping_empty_space
from test_train_eval import tiny_config
from test_train_eval import tiny_fast_config


def main(workdir, max_steps, *join):
  if join:
    address, count, index = join
    distributed.initialize(address, int(count), int(index), timeout_s=120)
  make_config = tiny_fast_config if os.environ.get("JAXNERF_TEST_MODEL") == "fast" else tiny_config
  config = make_config(int(max_steps))
  config.eval.stride = 4
  if os.environ.get("JAXNERF_TEST_SKIP_EMPTY") == "1":
    config = skipping_empty_space(config)
  state = train_lib.train_and_evaluate(config, workdir)
  copies = {jax.tree_util.keystr(path): np.stack([np.asarray(s.data) for s in leaf.addressable_shards])
            for path, leaf in jax.tree.leaves_with_path(state.params)}
  copies["density_grid"] = np.stack([np.asarray(s.data) for s in state.density_grid.addressable_shards])
  np.savez(os.path.join(workdir, f"params_{jax.process_index()}.npz"), **copies)
  eval_lib.evaluate(config, workdir)


if __name__ == "__main__":
  main(*sys.argv[1:])
