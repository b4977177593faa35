"""Kill test: train the demo, SIGKILL it at random moments (some during checkpoint saves), resume each time, and
compare the result with an uninterrupted run of the same length.

  python scripts/kill_test.py --kills=20 --max_steps=3000 --workdir=/tmp/kill_test

Prints one line per kill (when, what was on disk) and a final table: final step and test PSNR of both runs.
Exits 1 if the killed run does not end at the same step with a PSNR within --tolerance_db.
"""
import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TMP_PATTERN = "*.orbax-checkpoint-tmp*"


def run_args(max_steps, checkpoint_every, workdir):
  return ["--config=" + os.path.join(REPO, "configs", "demo.py"), f"--config.train.max_steps={max_steps}",
          f"--config.train.checkpoint_every={checkpoint_every}", "--config.train.val_every=0",
          f"--workdir={workdir}"]


def committed_steps(workdir):
  """Steps of the complete checkpoints in workdir (orbax renames a finished save to its step number)."""
  return sorted(int(name) for name in os.listdir(os.path.join(workdir, "checkpoints")) if name.isdigit()) \
      if os.path.isdir(os.path.join(workdir, "checkpoints")) else []


def train_and_eval(args_list, log):
  for script in ("train.py", "eval.py"):
    subprocess.run([sys.executable, os.path.join(REPO, script)] + args_list, check=True, stdout=log, stderr=log)


def kill_once(args_list, workdir, during_save, rng, log, max_wait):
  """Start train.py and SIGKILL it: either at a random moment, or while its first or second checkpoint save
  (chosen at random) is in progress, i.e. while orbax's temporary checkpoint directory exists, after a random
  extra delay of up to 20 ms. A kill in the first save of a run makes no progress; one in the second does.

  Returns (seconds after start, whether a save was in progress at the kill, return code), or None if the run
  finished before it could be killed.
  """
  pattern = os.path.join(workdir, "checkpoints", TMP_PATTERN)
  leftovers = set(glob.glob(pattern))  # of an earlier killed save; the run removes them as it starts
  process = subprocess.Popen([sys.executable, os.path.join(REPO, "train.py")] + args_list, stdout=log,
                             stderr=log)
  start = time.perf_counter()
  deadline = start + (max_wait * 4 if during_save else rng.uniform(3.0, max_wait))
  target_save = rng.choice([1, 2])
  saves_seen = set()
  saving = False
  while time.perf_counter() < deadline and process.poll() is None:
    if during_save:
      saves_seen.update(set(glob.glob(pattern)) - leftovers)
      if len(saves_seen) >= target_save:
        time.sleep(rng.uniform(0.0, 0.02))
        saving = True
        break
    time.sleep(0.001 if during_save else 0.05)
  if process.poll() is not None:
    return None
  saving = saving or bool(glob.glob(pattern))
  process.send_signal(signal.SIGKILL)
  returncode = process.wait()
  return time.perf_counter() - start, saving, returncode


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="scratch folder (its straight/ and killed/ are replaced)")
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--max_steps", type=int, default=3000)
  parser.add_argument("--checkpoint_every", type=int, default=100)
  parser.add_argument("--max_wait", type=float, default=45.0, help="latest random kill time after a start (s)")
  parser.add_argument("--tolerance_db", type=float, default=0.1)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  rng = random.Random(args.seed)
  straight_dir = os.path.join(args.workdir, "straight")
  killed_dir = os.path.join(args.workdir, "killed")
  for d in (straight_dir, killed_dir):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

  with open(os.path.join(args.workdir, "log.txt"), "w") as log:
    t0 = time.perf_counter()
    train_and_eval(run_args(args.max_steps, args.checkpoint_every, straight_dir), log)
    print(f"uninterrupted run: {time.perf_counter() - t0:.0f} s", flush=True)

    killed_args = run_args(args.max_steps, args.checkpoint_every, killed_dir)
    kills = 0
    while kills < args.kills:
      during_save = kills % 2 == 1  # alternate: a random moment, then during a save
      result = kill_once(killed_args, killed_dir, during_save, rng, log, args.max_wait)
      if result is None:
        print("the run finished before the kill; stopping the kill loop", flush=True)
        break
      kills += 1
      seconds, saving, returncode = result
      steps = committed_steps(killed_dir)
      leftovers = len(glob.glob(os.path.join(killed_dir, "checkpoints", TMP_PATTERN)))
      print(f"kill {kills:2d}: {'during save' if during_save else 'random':11s} after {seconds:5.1f} s, "
            f"save in progress: {'yes' if saving else 'no '}, exit {returncode}, checkpoints {steps}, "
            f"partial saves left: {leftovers}", flush=True)
    t0 = time.perf_counter()
    train_and_eval(killed_args, log)
    print(f"final resume to the end: {time.perf_counter() - t0:.0f} s", flush=True)

  results = {}
  for name, d in (("uninterrupted", straight_dir), ("killed", killed_dir)):
    with open(os.path.join(d, "eval", "metrics.json")) as f:
      results[name] = json.load(f)
  print("\n| run | kills | final step | test PSNR | test SSIM |\n|---|---|---|---|---|")
  for name, m in results.items():
    print(f"| {name} | {kills if name == 'killed' else 0} | {m['step']} | {m['psnr']:.4f} | {m['ssim']:.4f} |")
  difference = abs(results["killed"]["psnr"] - results["uninterrupted"]["psnr"])
  same_step = results["killed"]["step"] == results["uninterrupted"]["step"] == args.max_steps
  ok = same_step and difference <= args.tolerance_db and kills == args.kills
  print(f"\nPSNR difference {difference:.4f} dB; same final step: {same_step}; {kills} kills: "
        f"{'PASS' if ok else 'FAIL'}")
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
