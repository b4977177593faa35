"""Kill test: train the demo, SIGKILL it at random moments (some during checkpoint saves), resume each time, and
compare the result with an uninterrupted run of the same length.

  python scripts/kill_test.py --kills=20 --max_steps=3000 --workdir=/tmp/kill_test

With --processes=N (and --devices_per_process=D, CPU devices), each run is a job of N train.py processes joined by
jax.distributed, and each kill is a SIGKILL of one of them at random (the others then end on their own). With
--gcs_emulator, the runs' workdirs are in a bucket of a local Cloud Storage emulator (scripts/gcs_emulator.py),
gs://kill-test/straight and gs://kill-test/killed; --workdir then holds the emulator's files and the log.

Prints one line per kill (when, what was on disk) and a final table: final step and test PSNR of both runs.
Exits 1 if the killed run does not end at the same step with a PSNR within --tolerance_db.
"""
import argparse
import contextlib
import fnmatch
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from jaxnerf import storage  # noqa: E402
import gcs_emulator  # noqa: E402  (beside this script)

TMP_PATTERN = "*.orbax-checkpoint-tmp*"
# On gs://, orbax writes a checkpoint in its step's folder and marks it complete with this file (no renames).
COMMIT_FILE = "commit_success.txt"
OTHERS_END_S = 60  # the other processes of a job end within about 25 s of one being killed (distributed.py)


def run_args(max_steps, checkpoint_every, workdir):
  return ["--config=" + os.path.join(REPO, "configs", "demo.py"), f"--config.train.max_steps={max_steps}",
          f"--config.train.checkpoint_every={checkpoint_every}", "--config.train.val_every=0",
          f"--workdir={workdir}"]


def checkpoint_names(workdir):
  directory = storage.join(workdir, "checkpoints")
  return storage.listdir(directory) if storage.isdir(directory) else []


def is_complete(workdir, step_name):
  """Whether a checkpoint's step folder is complete (on local disk orbax renames a finished save to it)."""
  return not storage.is_url(workdir) or storage.isfile(storage.join(workdir, "checkpoints", step_name, COMMIT_FILE))


def committed_steps(workdir):
  """Steps of the complete checkpoints in workdir."""
  return sorted(int(name) for name in checkpoint_names(workdir) if name.isdigit() and is_complete(workdir, name))


def partial_saves(workdir):
  """Names of the checkpoints being written (or left by a killed save) in workdir."""
  return {name for name in checkpoint_names(workdir)
          if fnmatch.fnmatch(name, TMP_PATTERN) or name.isdigit() and not is_complete(workdir, name)}


def start_job(script, args_list, job, log):
  """`script` in job.processes processes of job.devices_per_process CPU devices each (one plain process when 1)."""
  env = dict(os.environ)
  if job.devices_per_process > 1:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={job.devices_per_process}"
  command = [sys.executable, os.path.join(REPO, script)] + args_list
  if job.processes == 1:
    return [subprocess.Popen(command, stdout=log, stderr=log, env=env)]
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{s.getsockname()[1]}"
  return [subprocess.Popen(command + [f"--coordinator_address={address}", f"--num_processes={job.processes}",
                                      f"--process_id={i}"], stdout=log, stderr=log, env=env)
          for i in range(job.processes)]


def train_and_eval(args_list, job, log):
  for script in ("train.py", "eval.py"):
    processes = start_job(script, args_list, job, log)
    if any(process.wait() != 0 for process in processes):
      raise SystemExit(f"{script} failed (see the log)")


def kill_once(args_list, workdir, during_save, rng, log, max_wait, job):
  """Start train.py and SIGKILL it (one of its processes, at random): either at a random moment, or while its
  first or second checkpoint save (chosen at random) is in progress, i.e. while orbax's temporary checkpoint
  directory exists, after a random extra delay of up to 20 ms. A kill in the first save of a run makes no
  progress; one in the second does.

  Returns (seconds after start, whether a save was in progress at the kill, return codes), or None if the run
  finished before it could be killed.
  """
  leftovers = partial_saves(workdir)  # of an earlier killed save; the run removes them as it starts
  processes = start_job("train.py", args_list, job, log)
  process = rng.choice(processes)
  start = time.perf_counter()
  deadline = start + (max_wait * 4 if during_save else rng.uniform(3.0, max_wait))
  target_save = rng.choice([1, 2])
  saves_seen = set()
  saving = False
  while time.perf_counter() < deadline and process.poll() is None:
    if during_save:
      saves_seen.update(partial_saves(workdir) - leftovers)
      if len(saves_seen) >= target_save:
        time.sleep(rng.uniform(0.0, 0.02))
        saving = True
        break
    time.sleep(0.001 if during_save else 0.05)
  if process.poll() is not None:
    for other in processes:
      other.wait()
    return None
  saving = saving or bool(partial_saves(workdir))
  process.send_signal(signal.SIGKILL)
  seconds = time.perf_counter() - start
  returncodes = []
  for other in processes:
    try:
      returncodes.append(other.wait(timeout=OTHERS_END_S))
    except subprocess.TimeoutExpired:
      other.kill()
      returncodes.append(f"{other.wait()} (killed after {OTHERS_END_S} s)")
  return seconds, saving, returncodes


def kill_repeatedly(args, killed_dir, rng, log):
  """SIGKILL the killed run args.kills times (resumed each time); the number of kills made."""
  killed_args = run_args(args.max_steps, args.checkpoint_every, killed_dir)
  kills = 0
  while kills < args.kills:
    during_save = kills % 2 == 1  # alternate: a random moment, then during a save
    result = kill_once(killed_args, killed_dir, during_save, rng, log, args.max_wait, args)
    if result is None:
      print("the run finished before the kill; stopping the kill loop", flush=True)
      break
    kills += 1
    seconds, saving, returncodes = result
    print(f"kill {kills:2d}: {'during save' if during_save else 'random':11s} after {seconds:5.1f} s, "
          f"save in progress: {'yes' if saving else 'no '}, exit {returncodes}, checkpoints "
          f"{committed_steps(killed_dir)}, partial saves left: {len(partial_saves(killed_dir))}", flush=True)
  return kills


def compare(args, straight_dir, killed_dir, kills):
  """Print the table of both runs' results; whether the killed run matches the uninterrupted one."""
  results = {}
  for name, d in (("uninterrupted", straight_dir), ("killed", killed_dir)):
    with storage.open_file(storage.join(d, "eval", "metrics.json")) as f:
      results[name] = json.load(f)
  print("\n| run | kills | final step | test PSNR | test SSIM |\n|---|---|---|---|---|")
  for name, m in results.items():
    print(f"| {name} | {kills if name == 'killed' else 0} | {m['step']} | {m['psnr']:.4f} | {m['ssim']:.4f} |")
  difference = abs(results["killed"]["psnr"] - results["uninterrupted"]["psnr"])
  same_step = results["killed"]["step"] == results["uninterrupted"]["step"] == args.max_steps
  ok = same_step and difference <= args.tolerance_db and kills == args.kills
  print(f"\nPSNR difference {difference:.4f} dB; same final step: {same_step}; {kills} kills: "
        f"{'PASS' if ok else 'FAIL'}")
  return ok


@contextlib.contextmanager
def run_folders(args):
  """(straight, killed) workdirs, empty: in args.workdir, or in a bucket of an emulator running meanwhile."""
  if not args.gcs_emulator:
    folders = [os.path.join(args.workdir, name) for name in ("straight", "killed")]
    for d in folders:
      shutil.rmtree(d, ignore_errors=True)
      os.makedirs(d)
    yield folders
    return
  emulator_dir = pathlib.Path(args.workdir, "gcs_emulator")
  shutil.rmtree(emulator_dir, ignore_errors=True)
  emulator_dir.mkdir(parents=True)
  with gcs_emulator.running(emulator_dir) as url:
    os.environ.update(gcs_emulator.environment(url))  # for this process and the runs it starts
    gcs_emulator.create_bucket(url, "kill-test")
    yield ["gs://kill-test/straight", "gs://kill-test/killed"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="scratch folder (its straight/ and killed/ are replaced)")
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--max_steps", type=int, default=3000)
  parser.add_argument("--checkpoint_every", type=int, default=100)
  parser.add_argument("--max_wait", type=float, default=45.0, help="latest random kill time after a start (s)")
  parser.add_argument("--tolerance_db", type=float, default=0.1)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--processes", type=int, default=1, help="processes of each run (jax.distributed)")
  parser.add_argument("--devices_per_process", type=int, default=1, help="CPU devices of each process")
  parser.add_argument("--gcs_emulator", action="store_true", help="workdirs in an emulated Cloud Storage bucket")
  args = parser.parse_args()

  rng = random.Random(args.seed)
  os.makedirs(args.workdir, exist_ok=True)
  with run_folders(args) as (straight_dir, killed_dir), open(os.path.join(args.workdir, "log.txt"), "w") as log:
    t0 = time.perf_counter()
    train_and_eval(run_args(args.max_steps, args.checkpoint_every, straight_dir), args, log)
    print(f"uninterrupted run: {time.perf_counter() - t0:.0f} s", flush=True)
    kills = kill_repeatedly(args, killed_dir, rng, log)
    t0 = time.perf_counter()
    train_and_eval(run_args(args.max_steps, args.checkpoint_every, killed_dir), args, log)
    print(f"final resume to the end: {time.perf_counter() - t0:.0f} s", flush=True)
    ok = compare(args, straight_dir, killed_dir, kills)
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
