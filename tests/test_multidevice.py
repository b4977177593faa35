"""Data parallelism: 8 CPU devices in one process, and two processes joined by jax.distributed, against one device.

The runs are subprocesses (a process's device count and distributed runtime are fixed when JAX starts); each
is killed with SIGKILL at its timeout, since a hung jax.distributed process ignores SIGTERM.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from jaxnerf.run import checkpoints
from jaxnerf.run import evaluate as eval_lib
from jaxnerf.run import train as train_lib
from jaxnerf.data import batching
from jaxnerf.data import loaders
from jaxnerf.run import state as state_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.data import scene as scene_lib
from conftest import REPO
from conftest import TINY
from test_train_eval import skipping_empty_space
from test_train_eval import tiny_config
from test_train_eval import tiny_fast_config

WORKER = os.path.join(REPO, "tests", "distributed_worker.py")
STEPS = 3


def launch(args, env_update=None, script=WORKER):
  env = dict(os.environ, **(env_update or {}))
  env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "tests"), env.get("PYTHONPATH", "")])
  return subprocess.Popen([sys.executable, script, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def finish(procs, timeout):
  """(returncode, stdout, stderr) of each process; SIGKILL for all at the deadline."""
  deadline = time.time() + timeout
  results = []
  try:
    for proc in procs:
      out, err = proc.communicate(timeout=max(1.0, deadline - time.time()))
      results.append((proc.returncode, out, err))
  finally:
    for proc in procs:
      proc.kill()
  return results


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def load_copies(workdir, process):
  with np.load(os.path.join(workdir, f"params_{process}.npz")) as f:
    return dict(f)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def flat_params(params):
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree.leaves_with_path(params)}


def assert_params_close(actual, expected):
  assert sorted(actual) == sorted(expected)
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("model", ["classic", "fast"])
def test_eight_devices_match_one_device(tmp_path, model):
  assert jax.device_count() == 1
  proc = launch([str(tmp_path / "eight"), str(STEPS)],
                {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAXNERF_TEST_MODEL": model})
  config = (tiny_fast_config if model == "fast" else tiny_config)(STEPS)
  config.eval.stride = 4
  one_dir = str(tmp_path / "one")
  state = train_lib.train_and_evaluate(config, one_dir)
  eval_lib.evaluate(config, one_dir)
  [(code, _, err)] = finish([proc], 300)
  assert code == 0, err[-3000:]

  copies = load_copies(tmp_path / "eight", 0)
  assert all(c.shape[0] == 8 for c in copies.values())
  for name, c in copies.items():  # every device holds the same parameters and occupancy grid
    assert all(np.array_equal(c[0], c[i]) for i in range(8)), name
  grid = copies.pop("density_grid")[0]
  assert_params_close({name: c[0] for name, c in copies.items()}, flat_params(state.params))
  # The grid's refresh is split over the eight devices; it matches the one-device grid. The classic config does
  # not skip empty space, so nothing refreshes its grid.
  assert np.any(grid > 0) == config.occupancy.skip_empty
  np.testing.assert_allclose(grid, np.asarray(state.density_grid), rtol=1e-4, atol=1e-6)

  one = read_json(os.path.join(one_dir, "eval", "metrics.json"))
  eight = read_json(tmp_path / "eight" / "eval" / "metrics.json")
  assert [r["file"] for r in eight["per_image"]] == ["test/r_0", "test/r_100"]
  np.testing.assert_allclose(eight["psnr"], one["psnr"], atol=1e-3)
  for entry in one["per_image"]:
    a = np.asarray(Image.open(os.path.join(one_dir, entry["render"])), np.int32)
    b = np.asarray(Image.open(tmp_path / "eight" / entry["render"]), np.int32)
    # Parameters agree to ~1e-6, so a pixel may round to the neighbouring level, rarely.
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
  workdir = str(tmp_path / "run")
  address = f"127.0.0.1:{free_port()}"
  # Skipping empty space: a grid to refresh, split over the processes, and compacted samples split over them.
  procs = [launch([workdir, str(STEPS), address, "2", str(i)], {"JAXNERF_TEST_SKIP_EMPTY": "1"}) for i in range(2)]

  # The reference: one device, fed the global batch the two processes build, the blocks of streams 0 and 1, each
  # drawn from its process's share of the training photos.
  config = skipping_empty_space(tiny_config(STEPS))
  model = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer)
  train_step = train_lib.make_train_step(model, optimizer, config, scene_lib.of_settings(config.data))
  t = config.train
  batchers = [batching.RayBatcher(loaders.load_views(config, "train", share=(p, 2)), t.batch_size // 2, t.batching,
                                  t.precrop_steps, t.precrop_fraction, seed=t.seed, stream=p) for p in range(2)]
  base_key = jax.random.wrap_key_data(state.key)
  for step in range(STEPS):
    blocks = [b(step) for b in batchers]
    batch = jax.tree.map(lambda *xs: np.concatenate(xs), *blocks)
    state, _ = train_step(state, batch, jax.random.fold_in(base_key, step))
  expected = flat_params(state.params)

  results = finish(procs, 300)
  for code, _, err in results:
    assert code == 0, err[-3000:]
  first, second = load_copies(workdir, 0), load_copies(workdir, 1)
  grids = first.pop("density_grid"), second.pop("density_grid")
  np.testing.assert_array_equal(grids[0], grids[1])
  assert np.any(grids[0] > 0)
  np.testing.assert_allclose(grids[0][0], np.asarray(state.density_grid), rtol=1e-4, atol=1e-6)
  for name in expected:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)
  assert_params_close({name: c[0] for name, c in first.items()}, expected)

  # One checkpoint, restorable (here in one process) to the trained parameters.
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(STEPS)]
  with checkpoints.manager(os.path.join(workdir, "checkpoints")) as mngr:
    restored = checkpoints.restore_latest(mngr, state_lib.create_train_state(config, model, optimizer))
  assert int(restored.step) == STEPS
  for name, value in flat_params(restored.params).items():
    np.testing.assert_array_equal(value, first[name][0], err_msg=name)

  # Only process 0 writes: one TensorBoard file, metrics and per-view lines from process 0 alone.
  assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 1
  assert read_json(os.path.join(workdir, "eval", "metrics.json"))["step"] == STEPS
  assert "PSNR" in results[0][1] and "PSNR" not in results[1][1]


def expect_one_line_error(result, expected):
  code, _, err = result
  assert code == 2, err[-3000:]
  assert "Traceback" not in err
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: ") and expected in last, last


def test_unreachable_coordinator_and_wrong_process_count_fail_in_bounded_time(tmp_path):
  train = os.path.join(REPO, "train.py")
  common = [f"--workdir={tmp_path / 'run'}", *TINY, "--distributed_timeout=5"]
  start = time.time()
  # Process 1 alone: nobody serves the coordinator. Process 0 alone of 2: the second never joins.
  alone = [launch(common + [f"--coordinator_address=127.0.0.1:{free_port()}", "--num_processes=2",
                            f"--process_id={i}"], script=train) for i in range(2)]
  for result in finish(alone, 120):
    expect_one_line_error(result, "not all of the 2 processes joined the coordinator at 127.0.0.1:")
  assert time.time() - start < 60
  # Two processes told different counts.
  address = f"--coordinator_address=127.0.0.1:{free_port()}"
  mismatched = [launch(common + [address, f"--num_processes={2 + i}", f"--process_id={i}"], script=train)
                for i in range(2)]
  for result in finish(mismatched, 120):
    expect_one_line_error(result, "told --num_processes=2 or 3")
  assert not os.path.exists(tmp_path / "run")


def test_sigterm_to_one_process_stops_both_at_one_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  train = os.path.join(REPO, "train.py")
  common = [f"--workdir={workdir}", *TINY, "--config.train.checkpoint_every=25",
            f"--coordinator_address=127.0.0.1:{free_port()}", "--num_processes=2"]
  procs = [launch(common + ["--config.train.max_steps=1000000", f"--process_id={i}"], script=train)
           for i in range(2)]
  try:
    deadline = time.time() + 240
    while not (workdir / "checkpoints" / "25").exists():
      assert all(p.poll() is None for p in procs) and time.time() < deadline, "training did not reach step 25"
      time.sleep(0.05)
    time.sleep(0.5)
    procs[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host; both must stop and save
  finally:
    results = finish(procs, 120)
  for code, _, err in results:
    assert code == 0, err[-3000:]
  line = [l for l in results[0][1].splitlines() if l.startswith("SIGTERM: saved a checkpoint at step")][0]
  saved = int(line.split("step ")[1].split(" ")[0])
  assert saved > 25 and "SIGTERM" not in results[1][1]
  assert max(int(d) for d in os.listdir(workdir / "checkpoints")) == saved

  # The two-process checkpoint resumes in one process.
  resumed = subprocess.run([sys.executable, train, *common[:-2], f"--config.train.max_steps={saved + 2}"],
                           capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"{saved}/{saved + 2}" in resumed.stderr
