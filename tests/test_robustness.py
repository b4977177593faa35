"""Where users meet the program: malformed scene files (fuzzed), Ctrl-C in train.py, eval.py and render.py, and a
process of a two-process job that dies or fails alone."""
import collections
import glob
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxnerf.runtime import stderr_guard
from jaxnerf.errors import DataError
from jaxnerf.run import state as state_lib
from jaxnerf.data import scene as scene_lib
from conftest import REPO
from conftest import TINY
from scene_fuzz import FORMATS
from scene_fuzz import corrupt_text
from scene_fuzz import dumps
from scene_fuzz import mutate
from test_multidevice import finish
from test_multidevice import free_port
from test_user_errors import tiny_config

FUZZ_CASES = 3000


def load_fuzzed(scene_format, root, json_path, data):
  """Write `data` as the scene file and load the scene: ("loaded", views) or ("error", its message)."""
  with open(json_path, "wb") as f:
    f.write(data)
  try:
    return "loaded", scene_format.load(root)
  except DataError as e:
    return "error", str(e)


@pytest.mark.parametrize("scene_format", FORMATS, ids=lambda f: f.name)
def test_fuzzed_scene_files_load_or_end_in_one_data_error_line(tmp_path, scene_format):
  rng = np.random.default_rng(12)
  root = str(tmp_path / "scene")
  json_path, document = scene_format.write(root, rng)
  assert load_fuzzed(scene_format, root, json_path, dumps(document).encode())[0] == "loaded"
  outcomes = collections.Counter()
  for case in range(FUZZ_CASES):
    data = corrupt_text(dumps(document), rng) if case % 20 == 0 else dumps(mutate(document, rng)).encode()
    try:
      outcome, result = load_fuzzed(scene_format, root, json_path, data)
    except Exception as e:  # pylint: disable=broad-except
      pytest.fail(f"case {case}: {type(e).__name__}: {e}\n{data[:400]!r}")
    outcomes[outcome] += 1
    if outcome == "error":
      assert "\n" not in result and result.startswith(root), f"case {case}: {result!r}"
    else:  # what loads is usable
      assert np.all(np.isfinite(result.cam_to_world)) and np.isfinite(result.focal) and result.focal > 0
      assert all(not os.path.isabs(name) and not name.startswith("..") for name in result.names)
      assert result.images.shape[1:] == (4, 4, 3) and np.all(np.isfinite(result.images))
  # Both outcomes are common: the mutator is neither harmless nor always fatal.
  assert outcomes["loaded"] > FUZZ_CASES // 100 and outcomes["error"] > FUZZ_CASES // 2, outcomes


@pytest.mark.parametrize("scene_format", FORMATS, ids=lambda f: f.name)
def test_fuzzed_scene_file_through_train_py(tmp_path, scene_format):
  """A few fuzzed scene files that fail: exit code 2, one `error:` line, the workdir untouched."""
  rng = np.random.default_rng(5)
  root = str(tmp_path / "scene")
  json_path, document = scene_format.write(root, rng)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("kept")
  checked = 0
  while checked < 2:
    data = dumps(mutate(document, rng)).encode()
    outcome, message = load_fuzzed(scene_format, root, json_path, data)
    if outcome == "loaded":
      continue
    result = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"--workdir={workdir}", *TINY,
                             f"--config.data.dataset={scene_format.name}", f"--config.data.data_dir={root}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {message}"
    assert os.listdir(workdir) == ["notes.txt"] and (workdir / "notes.txt").read_text() == "kept"
    checked += 1


def start(script, workdir, *args, tiny=True):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests"), os.environ.get("PYTHONPATH", "")]))
  return subprocess.Popen([sys.executable, os.path.join(REPO, script), f"--workdir={workdir}",
                           *(TINY if tiny else ()), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition, procs, timeout=240):
  deadline = time.time() + timeout
  while not condition():
    assert all(p.poll() is None for p in procs) and time.time() < deadline, "the condition was not reached"
    time.sleep(0.02)


def last_line(stderr):
  """The last line of stderr, after a progress bar that may share its row; asserts there is no traceback."""
  assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr[-3000:]
  return stderr.replace("\r", "\n").strip().splitlines()[-1]


def checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def interrupt(proc, times=1, gap_s=0.0):
  for _ in range(times):
    proc.send_signal(signal.SIGINT)
    time.sleep(gap_s)
  _, stderr = proc.communicate(timeout=120)
  return proc.returncode, stderr


def test_ctrl_c_saves_training_and_stops_eval_and_render_without_partial_files(tmp_path):
  workdir = str(tmp_path / "run")
  train = start("train.py", workdir, "--config.train.max_steps=100000", "--config.train.checkpoint_every=10")
  wait_for(lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "10")), [train])
  code, stderr = interrupt(train)
  assert code == 130
  saved = checkpoint_steps(workdir)[-1]
  assert saved > 10
  assert last_line(stderr) == (f"interrupted (Ctrl-C): saved a checkpoint at step {saved} in {workdir}; run the "
                               "same command to resume")

  # A second Ctrl-C while saving (a save every step here) may cut the save short, never leave a broken checkpoint.
  train = start("train.py", workdir, "--config.train.max_steps=100000", "--config.train.checkpoint_every=1")
  wait_for(lambda: checkpoint_steps(workdir)[-1] > saved + 3, [train])
  code, stderr = interrupt(train, times=2, gap_s=0.05)
  assert code == 130
  line, latest = last_line(stderr), checkpoint_steps(workdir)[-1]
  assert line in (f"interrupted (Ctrl-C): saved a checkpoint at step {latest} in {workdir}; run the same command "
                  "to resume", f"interrupted (Ctrl-C): stopped; the last checkpoint in {workdir} is step {latest}; "
                  "run the same command to continue"), line
  config = tiny_config()
  config.train.max_steps = 100000
  _, state = state_lib.restore_trained(config, workdir, scene_lib.load(workdir))
  assert int(state.step) == latest

  # Evaluation of the 100 training views, stopped after the first: no metrics.json, no partial files.
  evaluate = start("eval.py", workdir, "--config.eval.split=train", "--config.train.max_steps=100000")
  wait_for(lambda: glob.glob(os.path.join(workdir, "eval", "train", "r_0.png")), [evaluate])
  code, stderr = interrupt(evaluate)
  assert code == 130
  assert last_line(stderr) == (f"interrupted (Ctrl-C): stopped; the last checkpoint in {workdir} is step {latest}; "
                               "run the same command to continue")
  written = sorted(os.path.relpath(p, workdir) for p in glob.glob(os.path.join(workdir, "eval", "**"),
                                                                    recursive=True) if os.path.isfile(p))
  assert written and all(p.endswith((".png", ".npy")) and ".partial" not in p for p in written), written

  # A video stopped while it is being written: neither a partial file nor one under the final name is left.
  render = start("render.py", workdir, "--frames=500", "--config.train.max_steps=100000")
  wait_for(lambda: glob.glob(os.path.join(workdir, "videos", "*.partial.mp4")), [render])
  time.sleep(0.5)
  code, stderr = interrupt(render)
  assert code == 130 and last_line(stderr).startswith("interrupted (Ctrl-C): stopped; the last checkpoint")
  assert os.listdir(os.path.join(workdir, "videos")) == []


def test_ctrl_c_during_startup_prints_one_line_at_once(tmp_path):
  workdir = str(tmp_path / "run")
  proc = start("train.py", workdir, tiny=False)  # the demo's paper model: compiling its step takes a while
  time.sleep(4.0)  # importing JAX, loading the scene or compiling
  interrupted_at = time.time()
  code, stderr = interrupt(proc)
  assert code == 130 and time.time() - interrupted_at < 5
  # Which line depends on how far start-up got in 4 s (a loaded machine may not have made the workdir yet).
  assert stderr.replace("\r", "\n").strip().splitlines()[-1] in (
      f"interrupted (Ctrl-C): stopped; there is no checkpoint in {workdir} yet; run the same command to continue",
      "interrupted (Ctrl-C): stopped before anything was written")
  assert len([l for l in stderr.replace("\r", "\n").splitlines() if l and not l.startswith("training")]) == 1
  assert "Traceback" not in stderr and not glob.glob(os.path.join(workdir, "checkpoints", "*"))


def two_processes(workdir, per_process_args=((), ())):
  address = f"--coordinator_address=127.0.0.1:{free_port()}"
  return [start("train.py", workdir, "--config.train.max_steps=100000", "--config.train.checkpoint_every=5", address,
                "--num_processes=2", f"--process_id={i}", *per_process_args[i]) for i in range(2)]


@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_process_ends_the_other_with_one_line(tmp_path, victim):
  workdir = str(tmp_path / "run")
  procs = two_processes(workdir)
  try:
    wait_for(lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "5")), procs)
    time.sleep(0.3)
    procs[victim].kill()
    killed_at = time.time()
    [(code, _, stderr)] = finish([procs[1 - victim]], 120)
  finally:
    finish(procs, 1)
  assert time.time() - killed_at < 40
  assert code != 0
  saved = checkpoint_steps(workdir)[-1]
  line = last_line(stderr)
  assert "of this job stopped responding" in line or "of this 2-process job stopped responding" in line, line
  assert line.endswith(f"the last checkpoint in {workdir} is step {saved}; rerun the same command on every process "
                       "to resume"), line
  assert sum(l.startswith("error:") for l in stderr.splitlines()) == 1 and " F" not in stderr and "@ 0x" not in stderr


def test_a_user_error_on_one_process_ends_both_with_one_line(tmp_path):
  failing = 0  # the process that serves the coordination service: the others must read its error first
  workdir = str(tmp_path / "run")
  missing = str(tmp_path / "missing")
  args = [(), ()]
  args[failing] = (f"--config.data.data_dir={missing}",)
  results = finish(two_processes(workdir, args), 120)
  code, _, stderr = results[failing]
  assert code == 2 and stderr.strip() == f"error: {missing}: data directory not found"
  code, _, stderr = results[1 - failing]
  assert code == 3
  assert stderr.strip() == (f"error: process {failing} of this 2-process job stopped (error: {missing}: data "
                            f"directory not found); there is no checkpoint in {workdir} yet; fix that, then rerun "
                            "the same command on every process to resume")


def guarded(data, workdir=""):
  """What stderr_guard.filter_stream makes of `data`, a process's stderr."""
  reader, writer = os.pipe()
  os.write(writer, data)
  os.close(writer)
  sink = io.BytesIO()
  stderr_guard.filter_stream(reader, sink, workdir)
  os.close(reader)
  return sink.getvalue().decode()


def test_stderr_guard_replaces_an_abort_dump_and_passes_everything_else(tmp_path):
  os.makedirs(tmp_path / "checkpoints" / "40")
  os.makedirs(tmp_path / "checkpoints" / "41.orbax-checkpoint-tmp-1")  # incomplete: not named
  bar = b"\rtraining:   0%|  | 41/1000 [00:13<1:10, 2.50step/s]"
  runtime_log = (b"E1125 04:15:33.943036   15387 coordination_service_agent.cc:289] Polled an error\n"
                 b"Additional GRPC error information\n")
  dump = (b"F1125 04:15:33.943040   15387 client.h:80] Terminating process because the JAX distributed service\n"
          b"*** Check failure stack trace: ***\n    @     0x7f477d440634  absl::LogMessage::SendToLog()\n"
          b"Fatal Python error: Aborted\n\nThread 0x00007f472248b6c0 (most recent call first):\n")
  assert guarded(b"line one\n" + bar + b"\nerror: x\n") == "line one\n" + bar.decode() + "\nerror: x\n"
  assert guarded(bar + runtime_log + dump, str(tmp_path)) == (
      bar.decode() + "\nerror: a process of this job stopped responding (JAX's runtime ended this one); the last "
      f"checkpoint in {tmp_path} is step 40; rerun the same command on every process to resume\n")
  own = b"\nerror: process 1 of this 2-process job stopped responding; ...\n"
  assert guarded(runtime_log + own + dump) == own.decode().lstrip()
  # Runtime logs that no abort follows are shown as they were.
  assert guarded(b"a\n" + runtime_log + b"b\n") == "a\n" + runtime_log.decode() + "b\n"
