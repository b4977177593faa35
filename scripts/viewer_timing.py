"""Figures for docs/viewer.md: the viewer's frame time against resolution for a run, and training speed with and
without a browser attached (a stand-in browser that moves its camera every 0.2 s, so that every render it may do
is a fresh preview).

  python scripts/viewer_timing.py frames --config=configs/demo_fast.py --workdir=runs/demo_fast
  python scripts/viewer_timing.py training --config=configs/demo_fast.py --workdir=runs/demo_fast --steps=300

`training` copies the workdir and trains `--steps` more steps from its latest checkpoint twice (without, then with
the viewer), reading the rays per second that train.py's progress bar shows every log_every steps (the first
interval, with compilation, left out).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

from jaxnerf.core import camera_paths
from jaxnerf.run import cli
from jaxnerf.run import viewer as viewer_lib

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_multi_integer("height", [32, 48, 64, 100, 200, 400], "Frame heights to time (square frames).")
flags.DEFINE_integer("steps", 300, "Training steps per measurement.")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_frames():
  viewer, _ = viewer_lib.open_viewer(FLAGS.config, cli.workdir(FLAGS), port=0)
  renderer, pose = viewer.renderer, viewer.views.cam_to_world[0]
  print("| height x width | seconds (median of 3) | microseconds a ray |\n|---|---|---|")
  for height in FLAGS.height:
    times = []
    for _ in range(3):
      start = time.perf_counter()
      renderer.render(pose, 0.69, height, height, "colour")
      times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    print(f"| {height} x {height} | {seconds:.3f} | {seconds / height**2 * 1e6:.1f} |", flush=True)
  print(f"preview height for a 0.3 s budget (square): "
        f"{viewer_lib.preview_height(renderer.seconds_per_ray, 0.3, 1.0, 10**4)}")
  viewer.stop()


def server_message_types(data):
  """The message types in one server-to-browser websocket frame of viser 1.x: an 8-byte inner size, an 8-byte
  compressed size, then zstd-compressed msgpack."""
  import msgspec  # pylint: disable=import-outside-toplevel
  import zstandard  # pylint: disable=import-outside-toplevel
  size = int.from_bytes(data[8:16], "little")
  inner = zstandard.ZstdDecompressor().decompress(data[16:16 + size],
                                                  max_output_size=int.from_bytes(data[:8], "little"))
  return [m.get("type") for m in msgspec.msgpack.decode(inner)["messages"]]


def moving_browser(url, stop, frames):
  """Connects like a browser and moves its camera on a circle every 0.2 s; appends the time of each frame it gets
  to `frames`."""
  import msgspec  # pylint: disable=import-outside-toplevel
  import viser  # pylint: disable=import-outside-toplevel
  import websockets  # pylint: disable=import-outside-toplevel
  from websockets.sync.client import connect  # pylint: disable=import-outside-toplevel
  try:
    with connect(url.replace("http", "ws"), subprotocols=[f"viser-v{viser.__version__}"], max_size=None) as socket:
      angle = 0.0
      while not stop.is_set():
        socket.send(msgspec.msgpack.encode(camera_message(angle)))
        angle += 0.05
        end = time.time() + 0.2
        while time.time() < end:  # count the frames sent meanwhile
          try:
            if "BackgroundImageMessage" in server_message_types(socket.recv(timeout=0.05)):
              frames.append(time.time())
          except TimeoutError:
            pass
  except websockets.exceptions.ConnectionClosed:  # training ended
    pass


def camera_message(angle):
  """A browser's camera on a circle of radius 4 at height 1.5 around the origin, looking at it, 800x600."""
  position = np.array([4.0 * np.cos(angle), 4.0 * np.sin(angle), 1.5])
  forward = -position / np.linalg.norm(position)
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  rotation = np.stack([right, np.cross(forward, right), forward], axis=1)
  return {"type": "ViewerCameraMessage", "wxyz": tuple(map(float, camera_paths.rotation_to_quaternion(rotation))),
          "position": tuple(map(float, position)), "fov": 0.7, "near": 0.01, "far": 100.0, "image_height": 600,
          "image_width": 800, "look_at": (0.0, 0.0, 0.0), "up_direction": (0.0, 0.0, 1.0)}


def train_rays_per_second(workdir, steps, viewer):
  """Mean rays per second after the first logged interval, of `steps` more steps from workdir's checkpoint, and the
  number of frames the browser got (with the viewer)."""
  latest = viewer_lib.latest_checkpoint_step(workdir)
  config_file = config_flags.get_config_filename(FLAGS["config"])
  command = [sys.executable, os.path.join(REPO, "train.py"), f"--config={config_file}",
             f"--config.train.max_steps={latest + steps}", f"--config.train.checkpoint_every={10**9}",
             f"--workdir={workdir}"] + (["--viewer", "--port=0"] if viewer else [])
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=REPO))
  stop, frames = threading.Event(), []
  if viewer:
    line = ""
    while "viewer at" not in line:
      line = process.stdout.readline()
    url = re.search(r"viewer at (\S+)", line).group(1)
    threading.Thread(target=moving_browser, args=(url, stop, frames), daemon=True).start()
  _, stderr = process.communicate()
  stop.set()
  rates = [float(r) for r in re.findall(r"rays_per_s=(\d+)", stderr)]
  distinct = [r for i, r in enumerate(rates) if i == 0 or r != rates[i - 1]]  # each interval's, once
  return (float(np.mean(distinct[1:])) if len(distinct) > 1 else float("nan")), len(frames)


def time_training():
  """Without, with, with, without the viewer (drifts in the machine's other load cancel to first order)."""
  rates = {False: [], True: []}
  with tempfile.TemporaryDirectory() as scratch:
    for i, viewer in enumerate((False, True, True, False)):
      workdir = os.path.join(scratch, str(i))
      shutil.copytree(cli.workdir(FLAGS), workdir, ignore=shutil.ignore_patterns("eval", "export", "videos"))
      rate, frames = train_rays_per_second(workdir, FLAGS.steps, viewer)
      rates[viewer].append(rate)
      print(f"{'with' if viewer else 'without'} viewer: {rate:.0f} rays/s" + (f", {frames} frames" if viewer else ""),
            flush=True)
  without, with_viewer = np.mean(rates[False]), np.mean(rates[True])
  print(f"mean rays/s without viewer {without:.0f}, with a moving browser {with_viewer:.0f} "
        f"({100 * with_viewer / without:.0f}%)")


def main(argv):
  what = argv[1] if len(argv) > 1 else "frames"
  if what not in ("frames", "training"):
    raise app.UsageError("expected `frames` or `training`")
  cli.quiet_library_logs()
  time_frames() if what == "frames" else time_training()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
