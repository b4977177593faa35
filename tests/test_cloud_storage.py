"""Runs on Cloud Storage (gs://, a local emulator): the demo trained from a gs:// scene into a gs:// workdir by
train.py, resumed from a checkpoint, evaluated and rendered, gives exactly what training straight through gives on
local disk."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils import epath

import jaxnerf
from jaxnerf import storage
from jaxnerf.data import loaders
from jaxnerf.errors import DataError
from jaxnerf.errors import WorkdirError
from jaxnerf.run import evaluate as eval_lib
from jaxnerf.run import train as train_lib
from jaxnerf.run import video as video_lib
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.runtime import stderr_guard
from conftest import REPO
from test_train_eval import demo

# The demo config made a seconds-long run; the same settings as train.py flags and as a config.
SETTINGS = {"model.mlp.depth": 2, "model.mlp.width": 32, "model.mlp.skip_layer": 1, "model.mlp.view_width": 16,
            "model.hierarchical.num_coarse_samples": 8, "model.hierarchical.num_fine_samples": 8,
            "train.batch_size": 128, "train.checkpoint_every": 2, "train.log_every": 1, "train.val_every": 0,
            "train.precrop_steps": 2, "eval.chunk": 2048, "eval.stride": 4}


def config_of(data_dir, max_steps):
  config = demo.get_config()
  for name, value in {**SETTINGS, "data.data_dir": data_dir, "train.max_steps": max_steps}.items():
    group, field = name.rsplit(".", 1)
    setattr(_group(config, group), field, value)
  return config


def _group(config, dotted):
  for part in dotted.split("."):
    config = getattr(config, part)
  return config


def upload_folder(local, url):
  """Copy the files under the local folder `local` to the same names under `url`."""
  for root, _, names in os.walk(local):
    for name in names:
      relative = os.path.relpath(os.path.join(root, name), local)
      with open(os.path.join(root, name), "rb") as f:
        epath.Path(storage.join(url, relative)).write_bytes(f.read())


def start_training(data_dir, workdir, max_steps):
  """train.py on the settings above, in a new process."""
  flags = [f"--config.{name}={value}" for name, value in SETTINGS.items()]
  return subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), f"--workdir={workdir}",
                           f"--config.data.data_dir={data_dir}", f"--config.train.max_steps={max_steps}", *flags],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_evaluate_render(data_dir, workdir):
  """Train (or resume) to step 4, evaluate, render a 2-frame video: the state, the metrics, the video's paths."""
  config = config_of(data_dir, 4)
  state = train_lib.train_and_evaluate(config, workdir)
  return state, eval_lib.evaluate(config, workdir), video_lib.render_video(config, workdir, "orbit", 2, factor=4)


def read_bytes(path):
  with storage.open_file(path, "rb") as f:
    return f.read()


def test_demo_on_cloud_storage_matches_local_disk(tmp_path, gcs_bucket):
  scene = storage.join(gcs_bucket, "scenes", "lego_100")
  upload_folder(jaxnerf.DEMO_SCENE, scene)
  on_disk = str(tmp_path / "run")
  in_bucket = storage.join(gcs_bucket, "runs", "demo")
  command_line_run = start_training(scene, in_bucket, 4)  # meanwhile, the local run
  local_state, local_metrics, local_video = train_evaluate_render(jaxnerf.DEMO_SCENE, on_disk)
  _, stderr = command_line_run.communicate(timeout=300)
  assert command_line_run.returncode == 0, stderr[-3000:]
  # As if stopped after its step-2 checkpoint: resumed from there.
  assert storage.listdir(storage.join(in_bucket, "checkpoints")) == ["2", "4"]
  epath.Path(storage.join(in_bucket, "checkpoints", "4")).rmtree()
  state, metrics, video = train_evaluate_render(scene, in_bucket)

  assert int(state.step) == 4 and storage.listdir(storage.join(in_bucket, "checkpoints")) == ["2", "4"]
  assert stderr_guard.last_checkpoint_note(in_bucket) == f"the last checkpoint in {in_bucket} is step 4"
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(local_state.params)):
    np.testing.assert_array_equal(a, b)
  assert metrics == local_metrics
  assert json.loads(read_bytes(storage.join(in_bucket, "eval", "metrics.json"))) == json.loads(json.dumps(metrics))
  for entry in metrics["per_image"]:  # the renders, byte for byte
    assert read_bytes(storage.join(in_bucket, entry["render"])) == read_bytes(os.path.join(on_disk, entry["render"]))
  for kind in ("rgb", "depth"):
    assert video[kind] == storage.join(in_bucket, os.path.relpath(local_video[kind], on_disk))
    assert read_bytes(video[kind]) == read_bytes(local_video[kind])
  written = storage.listdir(in_bucket)
  assert {"checkpoints", "config.json", "scene.json", "eval", "videos", "tensorboard"} <= set(written)
  assert any(name.startswith("events.out.tfevents") for name in storage.listdir(storage.join(in_bucket, "tensorboard")))
  # Files are uploaded whole: no partial names in the bucket.
  assert not [p for p in epath.Path(in_bucket).glob("*/*") if ".partial" in p.name]


def test_missing_bucket_and_scene_are_one_line_errors(gcs_bucket):
  config = config_of(storage.join(gcs_bucket, "no_scene"), 2)
  with pytest.raises(DataError, match=f"^{storage.join(gcs_bucket, 'no_scene')}: data directory not found$"):
    loaders.load_views(config, "train")
  with pytest.raises(WorkdirError, match=r"^gs://no-such-bucket-jaxnerf/run: cannot write to the workdir \(no such "
                     r"bucket or folder\)$"):
    workdir_lib.prepare_workdir(config, "gs://no-such-bucket-jaxnerf/run")


def test_listings_show_what_another_process_wrote(gcs_bucket):
  """gcsfs keeps folder listings for the life of a process; a process that watches a folder (the viewer's
  checkpoint poll, kill_test.py) still sees what another process writes there afterwards."""
  folder = storage.join(gcs_bucket, "watched")
  epath.Path(storage.join(folder, "a.txt")).write_text("a")
  assert storage.listdir(folder) == ["a.txt"] and not storage.isfile(storage.join(folder, "b.txt"))
  write = "from etils import epath; import sys; epath.Path(sys.argv[1]).write_text('b')"
  subprocess.run([sys.executable, "-c", write, storage.join(folder, "b.txt")], check=True, env=os.environ)
  assert storage.listdir(folder) == ["a.txt", "b.txt"]
  assert storage.isfile(storage.join(folder, "b.txt")) and storage.exists(storage.join(folder, "b.txt"))
