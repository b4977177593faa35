"""The web viewer (viser): a browser's camera gets a rendered frame over the websocket, keyframes placed from it
save as a camera path file, and training with the viewer on runs to the end with no browser."""
import io
import sys
import threading
import time

import numpy as np
import pytest

from jaxnerf.core import camera_paths
from jaxnerf.run import camera_path_files
from jaxnerf.run import rendering
from jaxnerf.run import train as train_lib
from test_train_eval import tiny_fast_config

viser = pytest.importorskip("viser")
msgpack = pytest.importorskip("msgspec").msgpack
zstandard = pytest.importorskip("zstandard")
websockets_sync = pytest.importorskip("websockets.sync.client")
from jaxnerf.run import viewer as viewer_lib  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A 30-step run of the fast model, trained with the viewer on (port 0: any free port) and no browser."""
  config = tiny_fast_config(30)
  config.train.checkpoint_every = 30
  config.occupancy.skip_empty = config.occupancy.skip_in_training = False  # a young grid marks nearly all empty
  workdir = str(tmp_path_factory.mktemp("viewer") / "run")
  state = train_lib.train_and_evaluate(config, workdir, viewer_port=0)
  assert int(state.step) == 30
  return config, workdir


def server_messages(data):
  """The messages of one server-to-browser websocket frame: an 8-byte inner size, an 8-byte compressed size,
  then zstd-compressed msgpack (viser 1.x's wire format)."""
  compressed_size = int.from_bytes(data[8:16], "little")
  inner = zstandard.ZstdDecompressor().decompress(data[16:16 + compressed_size],
                                                  max_output_size=int.from_bytes(data[:8], "little"))
  return msgpack.decode(inner)["messages"]


def browser(url, camera, received, stop):
  """A stand-in for the browser's page: sends `camera`, and again once the server has placed it at the start view
  (SetCameraLookAtMessage, the last it sets); keeps the background images it is sent after that."""
  with websockets_sync.connect(url.replace("http", "ws"), subprotocols=[f"viser-v{viser.__version__}"],
                               max_size=None) as socket:
    socket.send(msgpack.encode({"type": "ViewerCameraMessage", **camera}))
    moved = False
    while not stop.is_set():
      try:
        messages = server_messages(socket.recv(timeout=0.1))
      except TimeoutError:
        continue
      if not moved and any(m.get("type") == "SetCameraLookAtMessage" for m in messages):
        socket.send(msgpack.encode({"type": "ViewerCameraMessage", **camera}))
        moved = True
      received.extend(m for m in messages if moved and m.get("type") == "BackgroundImageMessage"
                      and m.get("rgb_data") is not None)


def test_browser_gets_a_frame_and_saves_a_camera_path(tiny_run):
  from PIL import Image
  config, workdir = tiny_run
  viewer, reload_newer = viewer_lib.open_viewer(config, workdir, port=0)
  assert not reload_newer()  # no newer checkpoint
  assert viewer.server.get_port() > 0 and viewer.url.endswith(f":{viewer.server.get_port()}")
  # Looking from (0, -3.5, 1) towards the origin (OpenCV axes: x right, y down, z forward), 4:3.
  forward = -np.array([0.0, -3.5, 1.0]) / np.linalg.norm([0.0, -3.5, 1.0])
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right /= np.linalg.norm(right)
  rotation = np.stack([right, np.cross(forward, right), forward], axis=1)
  camera = {"wxyz": tuple(map(float, camera_paths.rotation_to_quaternion(rotation))), "position": (0.0, -3.5, 1.0),
            "fov": 0.7, "near": 0.01, "far": 100.0, "image_height": 60, "image_width": 80,
            "look_at": (0.0, 0.0, 0.0), "up_direction": (0.0, 0.0, 1.0)}
  # The frame that camera should get: the field rendered here through the run's own rays and render function.
  gl_pose = np.concatenate([rotation * [1, -1, -1], np.array([[0.0], [-3.5], [1.0]])], axis=1)
  rays = viewer.views.pinhole_rays(gl_pose, 80, 60, 0.7)
  expected = rendering.render_rays(viewer.renderer.render_chunk, viewer.renderer.variables, rays, 2048)["rgb"]
  matches = lambda frame: frame.shape == expected.shape and np.abs(frame / 255.0 - expected).mean() < 0.02
  received, stop = [], threading.Event()
  thread = threading.Thread(target=browser, args=(viewer.url, camera, received, stop), daemon=True)
  thread.start()
  try:
    # Frames of the start view may come first; wait for one of the browser's camera.
    deadline, frames = time.time() + 60, []
    while not any(map(matches, frames)) and time.time() < deadline:
      if viewer.work() == 0.0:
        time.sleep(0.02)
      frames = [np.asarray(Image.open(io.BytesIO(m["rgb_data"]))) for m in list(received)]
    assert frames, "no frame reached the browser"
    # At the browser's aspect; this one at its height (60, under the max of 100), as the preview fits the budget.
    assert all(abs(f.shape[1] / f.shape[0] - 4 / 3) < 0.1 for f in frames)
    assert any(map(matches, frames)), [np.abs(f / 255.0 - expected).mean() for f in frames if f.shape == (60, 80, 3)]

    client = viewer.connected()[0].client
    viewer._add_keyframe(client)  # pylint: disable=protected-access
    client.camera.position = (1.0, -3.5, 1.0)
    viewer._add_keyframe(client)  # pylint: disable=protected-access
    poses, fov, times, fps = camera_path_files.load(viewer.save_path("test"))
    # The keyframe is the browser's camera in OpenGL's convention: looking down -z, with +y up (OpenCV's -y).
    np.testing.assert_allclose(poses[0, :, 3], [0.0, -3.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(-poses[0, :, 2], forward, atol=1e-5)
    np.testing.assert_allclose(poses[0, :, 1], -rotation[:, 1], atol=1e-5)
    np.testing.assert_allclose(poses[1, :, 3], [1.0, -3.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(fov, np.degrees(0.7), rtol=1e-6)
    np.testing.assert_allclose(times, [0.0, 2.0])
  finally:
    stop.set()
    thread.join(timeout=5)
    viewer.stop()


def test_preview_height_fits_the_budget():
  # 1e-5 s a ray and 0.3 s: 30000 pixels, 200 x 150 at 4:3.
  assert viewer_lib.preview_height(1e-5, 0.3, 4 / 3, 800) == 150
  assert viewer_lib.preview_height(1e-5, 0.3, 4 / 3, 100) == 100  # never above the full height
  assert viewer_lib.preview_height(1.0, 0.3, 1.0, 800) == viewer_lib.MIN_PREVIEW_HEIGHT
  pose = np.array([[1.0, 0, 0, 1], [0, 0, -1, 2], [0, 1, 0, 3]])
  np.testing.assert_allclose(viewer_lib.opencv_pose(viewer_lib.opencv_pose(pose)), pose)


def test_missing_viser_is_one_clear_error(monkeypatch):
  from jaxnerf.errors import MissingExtraError
  monkeypatch.setitem(sys.modules, "viser", None)  # what an environment without the extra sees
  with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[viewer\]"'):
    viewer_lib.import_viser()
