"""A web viewer of a run (viser, the `viewer` extra): the field rendered from each browser's camera, the training
cameras as frustums with their photos, the scene box, and camera paths placed from the browser.

All rendering happens in the caller's thread, one frame per Viewer.work() call: view.py's loop (serve) calls it
whenever it is idle, the training loop (TrainingViewer) between steps within a share of the time. viser's own
threads only record camera moves and button presses. A frame is first rendered small (a preview sized to take
`frame_budget` seconds at the measured speed), then, once the camera has rested, at the full height the browser
asks for; a move cancels a refinement between bands of rows.
"""
import dataclasses
import os
import threading
import time

import numpy as np

from jaxnerf import storage
from jaxnerf.core import camera_paths
from jaxnerf.core import colormaps
from jaxnerf.core import poses as poses_lib
from jaxnerf.data import loaders
from jaxnerf.errors import MissingExtraError
from jaxnerf.run import camera_path_files
from jaxnerf.run import rendering
from jaxnerf.run import state as state_lib
from jaxnerf.run import workdir as workdir_lib

OUTPUTS = ("colour", "depth", "opacity")
PROPOSAL_DEPTH = "proposal depth"
REST_SECONDS = 0.25  # a camera unmoved this long gets its full-size frame
MIN_PREVIEW_HEIGHT = 16
THUMBNAIL_HEIGHT = 64  # of the training photos on the frustums
# The first frames compile the render function (seconds): the speed estimate starts pessimistic, at 20 us a ray.
INITIAL_SECONDS_PER_RAY = 2e-5


def import_viser():
  try:
    import viser  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise MissingExtraError("the viewer needs viser: pip install -e \".[viewer]\"") from None
  return viser


def opencv_pose(cam_to_world):
  """[3, 4] camera-to-world in OpenGL's convention (rays.py: y up, looking down -z) as OpenCV's (viser's: y down,
  looking down +z), or back: the y and z axes flip."""
  return np.asarray(cam_to_world, np.float64)[:3] * np.array([1.0, -1.0, -1.0, 1.0])


def preview_height(seconds_per_ray, budget, aspect, full_height):
  """The height of a frame of width/height `aspect` that renders in about `budget` seconds at `seconds_per_ray`,
  within [MIN_PREVIEW_HEIGHT, full_height]."""
  pixels = budget / max(seconds_per_ray, 1e-12)
  return int(np.clip(np.sqrt(pixels / aspect), min(MIN_PREVIEW_HEIGHT, full_height), full_height))


class SceneRenderer:
  """Frames of a run's field from any pinhole camera: colour, depth or opacity (and the first level's depth for
  proposal models), with a running estimate of the seconds each ray takes."""

  def __init__(self, model, scene, config, views, chunk=2048):
    self.config, self.views, self.chunk = config, views, chunk
    self.outputs = OUTPUTS + ((PROPOSAL_DEPTH,) if config.model.sampler == "proposal" else ())
    self.render_chunk = rendering.make_render_chunk(model, scene, config,
                                                    proposal_depth=PROPOSAL_DEPTH in self.outputs)
    self.variables, self.step = None, None
    self.seconds_per_ray = INITIAL_SECONDS_PER_RAY
    poses = views.cam_to_world.astype(np.float64)
    self.centre = poses_lib.nearest_point_to_axes(poses) if len(poses) > 1 else poses[0, :, 3] - poses[0, :, 2]
    # The run's near and far bound distances from cameras as far out as the training ones; a camera farther out
    # starts its rays at that distance from the centre (bounded scenes; the space it skips is empty).
    self.reach = None if views.ndc or config.model.contraction else \
        float(np.linalg.norm(poses[:, :, 3] - self.centre, axis=-1).max())

  def warm_up(self):
    """Compile the render function and measure its speed on two small frames, before a browser waits for one."""
    for size in (8, 32):
      self.render(self.views.cam_to_world[0], 1.0, size, size, "colour")

  def set_variables(self, variables, step):
    self.variables, self.step = variables, step

  def render(self, cam_to_world, fov_y, width, height, output, cancelled=lambda: False):
    """The [height, width, 3] uint8 frame of `output` from a camera (OpenGL convention, vertical field of view in
    radians) and its [height, width] depth along the camera's axis (inf where empty; None in NDC scenes), for the
    browser to hide the frustums behind the surface; None if `cancelled()` turned true between bands of rows."""
    start = time.perf_counter()
    rays = self.views.pinhole_rays(cam_to_world, width, height, fov_y)
    skipped = 0.0 if self.reach is None else max(0.0, np.linalg.norm(cam_to_world[:, 3] - self.centre) - self.reach)
    rays = rays._replace(origins=rays.origins + np.float32(skipped) * rays.directions)
    rows = max(1, self.chunk // width)
    bands = []
    for top in range(0, height, rows):
      if bands and cancelled():
        return None
      band = type(rays)(*(field[top:top + rows] for field in rays))
      bands.append(rendering.render_rays(self.render_chunk, self.variables, band, self.chunk))
    out = {name: np.concatenate([band[name] for band in bands]) for name in bands[0] if np.ndim(bands[0][name])}
    padded_rays = -(-rows * width // self.chunk) * self.chunk * len(bands)  # what the chunked calls rendered
    self.seconds_per_ray = (time.perf_counter() - start) / padded_rays
    # The rays' directions have unit length along the camera axis, so distance along them is that axis's depth.
    depth = None if self.views.ndc else \
        skipped + np.nan_to_num(colormaps.ray_distance(out["depth"], out["acc"]), nan=np.inf)
    return self._image(out, output), depth

  def _image(self, out, output):
    if output == "colour":
      return np.round(np.clip(out["rgb"], 0.0, 1.0) * 255).astype(np.uint8)
    if output == "opacity":
      return np.repeat(np.round(np.clip(out["acc"], 0.0, 1.0)[..., None] * 255).astype(np.uint8), 3, axis=-1)
    if output == PROPOSAL_DEPTH:
      out = {"depth": out["proposal_depth"], "acc": out["proposal_acc"]}
    return rendering.depth_to_image(out, self.config)[0]


@dataclasses.dataclass
class Browser:
  """What the viewer knows of one connected browser."""
  client: object
  shown_stamp: float = -1.0  # the camera update time of the last frame sent
  shown_generation: int = -1  # the Viewer.generation it was rendered at (output, checkpoint)
  refined: bool = False
  placed: bool = False  # its camera moved to the start view (once the browser has sent its own)
  playback: object = None  # (poses [F, 3, 4], fov_y [F] radians, fps, start time) while a path plays


class Viewer:
  """The viser server of one run, its scene (frustums, box), controls and the browsers connected to it."""

  def __init__(self, viser, port, renderer, views, path_dir, frame_budget=0.3, refine_budget=None):
    self.renderer, self.views, self.path_dir = renderer, views, path_dir
    self.frame_budget, self.refine_budget = frame_budget, refine_budget
    self.generation = 0  # bumped when what is shown changes (output, checkpoint): every browser re-renders
    self.browsers = {}
    self.keyframes = []  # (pose [3, 4] OpenGL, fov_y degrees)
    self.path_handles = []  # the keyframes' frustums and the path's line in the scene
    self.paused = False
    self.lock = threading.Lock()  # browsers and keyframes change in viser's threads
    self.server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
    self.url = f"http://{self.server.get_host()}:{self.server.get_port()}"
    self.server.on_client_connect(self._connected)
    self.server.on_client_disconnect(self._disconnected)
    self._add_scene()
    self._add_controls()

  def _add_scene(self):
    poses = self.views.cam_to_world.astype(np.float64)
    up = poses_lib.normalize(poses[:, :, 1].sum(0))
    self.server.scene.set_up_direction(tuple(up))
    centre = poses[:, :, 3].mean(0)
    scale = 0.06 * np.median(np.linalg.norm(poses[:, :, 3] - centre, axis=-1))
    fov = 2 * np.arctan(0.5 * self.views.height / self.views.focal)
    stride = max(1, self.views.height // THUMBNAIL_HEIGHT)
    for i, (pose, image) in enumerate(zip(poses, self.views.images)):
      self.server.scene.add_camera_frustum(
          f"/training_cameras/{i}", fov=fov, aspect=self.views.width / self.views.height, scale=scale,
          image=np.round(image[::stride, ::stride] * 255).astype(np.uint8), format="jpeg", color=(40, 90, 200),
          thickness=1.5, thickness_units="screen",
          wxyz=camera_paths.rotation_to_quaternion(opencv_pose(pose)[:, :3]), position=pose[:, 3])
    self.frustum_scale = scale
    # Browsers start behind the first training camera, 1.5 times as far from the point the cameras look at, so that
    # the object and the cameras around it are in view.
    self.look_at = self.renderer.centre
    self.start_position = self.look_at + 1.5 * (poses[0, :, 3] - self.look_at)

  def show_scene_box(self, scene_box):
    """The box (min x, y, z, max x, y, z) where the grids and the occupancy grid live, as a wireframe."""
    low, high = np.asarray(scene_box[:3], np.float64), np.asarray(scene_box[3:], np.float64)
    self.server.scene.add_box("/scene_box", color=(200, 120, 0), dimensions=tuple(high - low), wireframe=True,
                              position=tuple((low + high) / 2))

  def _add_controls(self):
    gui = self.server.gui
    self.status = gui.add_markdown("starting")
    self.output = gui.add_dropdown("Output", self.renderer.outputs, initial_value="colour")
    self.max_height = gui.add_slider("Max height (px)", min=32, max=max(64, 2 * self.views.height), step=8,
                                     initial_value=self.views.height)
    for control in (self.output, self.max_height):
      control.on_update(lambda _: self._refresh())
    with gui.add_folder("Camera path"):
      add, clear = gui.add_button("Add keyframe (current view)"), gui.add_button("Clear keyframes")
      self.seconds = gui.add_number("Seconds between keyframes", initial_value=2.0, min=0.1, step=0.1)
      play = gui.add_button("Preview path")
      self.path_name = gui.add_text("File name", initial_value="path")
      save = gui.add_button("Save path")
      self.path_note = gui.add_markdown("no keyframes")
    add.on_click(lambda event: self._add_keyframe(event.client))
    clear.on_click(lambda _: self._set_keyframes([]))
    play.on_click(lambda event: self._play(event.client))
    save.on_click(lambda _: self._save_path())

  def add_pause_control(self):
    """A pause/resume checkbox (training)."""
    pause = self.server.gui.add_checkbox("Pause training", initial_value=False)
    pause.on_update(lambda _: setattr(self, "paused", pause.value))

  def set_status(self, text):
    self.status.content = text

  def _refresh(self):
    self.generation += 1

  def _place_camera(self, client):
    client.camera.fov = 2 * np.arctan(0.5 * self.views.height / self.views.focal)
    client.camera.position = self.start_position
    client.camera.look_at = self.look_at

  def _connected(self, client):
    with self.lock:
      self.browsers[client.client_id] = Browser(client)

  def _disconnected(self, client):
    with self.lock:
      self.browsers.pop(client.client_id, None)

  def connected(self):
    with self.lock:
      return list(self.browsers.values())

  def stop(self):
    self.server.stop()

  # Camera paths.

  def _add_keyframe(self, client):
    pose = opencv_pose(np.concatenate([camera_paths.quaternion_to_rotation(client.camera.wxyz),
                                       np.asarray(client.camera.position)[:, None]], axis=1))
    self._set_keyframes(self.keyframes + [(pose, float(np.degrees(client.camera.fov)))])

  def _set_keyframes(self, keyframes):
    with self.lock:
      self.keyframes = keyframes
    for handle in self.path_handles:
      handle.remove()
    self.path_handles = []
    for i, (pose, fov) in enumerate(keyframes):
      cv = opencv_pose(pose)
      self.path_handles.append(self.server.scene.add_camera_frustum(
          f"/camera_path/key_{i}", fov=np.radians(fov), aspect=self.views.width / self.views.height,
          scale=self.frustum_scale, color=(230, 60, 40), thickness=2.5, thickness_units="screen",
          wxyz=camera_paths.rotation_to_quaternion(cv[:, :3]), position=cv[:, 3]))
    if len(keyframes) > 1:
      points = self._path(fps=10)[0][:, :, 3]
      self.path_handles.append(self.server.scene.add_line_segments(
          "/camera_path/line", np.stack([points[:-1], points[1:]], axis=1), colors=(230, 60, 40)))
    self.path_note.content = f"{len(keyframes)} keyframes" if keyframes else "no keyframes"

  def _path(self, fps):
    """The interpolated path of the keyframes: ([F, 3, 4] poses, [F] fov_y in degrees, [K] keyframe times)."""
    poses = np.stack([pose for pose, _ in self.keyframes])
    fovs = np.array([fov for _, fov in self.keyframes])
    times = np.arange(len(self.keyframes)) * float(self.seconds.value)
    path_poses, path_fovs = camera_paths.interpolate_keyframes(poses, fovs, times, fps)
    return path_poses, path_fovs, times

  def _play(self, client):
    if len(self.keyframes) < 2:
      self.path_note.content = "add two keyframes or more to preview a path"
      return
    poses, fovs, _ = self._path(fps=10)
    with self.lock:
      browser = self.browsers.get(client.client_id)
      if browser is not None:
        browser.playback = (poses, np.radians(fovs), 10.0, time.time())

  def save_path(self, name):
    """Write the keyframes to path_dir/<name>.json (camera_path_files.py); returns the file's path."""
    poses = np.stack([pose for pose, _ in self.keyframes])
    times = np.arange(len(self.keyframes)) * float(self.seconds.value)
    storage.makedirs(self.path_dir)
    file = storage.join(self.path_dir, f"{name}.json")
    with workdir_lib.written_in_place(file) as partial:
      with open(partial, "w") as f:
        f.write(camera_path_files.to_json(poses, [fov for _, fov in self.keyframes], times, fps=30))
    return file

  def _save_path(self):
    if len(self.keyframes) < 1:
      self.path_note.content = "no keyframes to save"
      return
    name = os.path.basename(self.path_name.value.strip()) or "path"
    file = self.save_path(name[:-5] if name.endswith(".json") else name)
    self.path_note.content = f"{len(self.keyframes)} keyframes saved to `{file}`; render with `render.py --path={file}`"

  # Rendering.

  def work(self, prepare=None):
    """Render at most one frame for one browser: a preview where a camera moved (or the output or checkpoint
    changed), else a full-size frame where a camera has rested. `prepare()`, if given, is called first when there
    is a frame to render (the training loop hands over its current parameters). Returns the seconds spent."""
    now = time.time()
    for browser in self.connected():
      self._advance_playback(browser, now)
      stamp = browser.client.camera.update_timestamp
      if stamp == 0.0:  # no camera message yet
        continue
      if not browser.placed:  # viser sets a camera only after the browser has sent one
        self._place_camera(browser.client)
        browser.placed = True
        continue
      moved = stamp != browser.shown_stamp or self.generation != browser.shown_generation
      if moved or (not browser.refined and now - stamp >= REST_SECONDS and browser.playback is None):
        start = time.perf_counter()
        if prepare is not None:
          prepare()
        self._render_for(browser, stamp, refine=not moved)
        return time.perf_counter() - start
    return 0.0

  def _render_for(self, browser, stamp, refine):
    camera, generation = browser.client.camera, self.generation
    full = int(min(self.max_height.value, max(camera.image_height, 1)))
    budget = self.refine_budget if refine else self.frame_budget
    height = full if budget is None else preview_height(self.renderer.seconds_per_ray, budget, camera.aspect, full)
    width = max(1, int(round(height * camera.aspect)))
    pose = opencv_pose(np.concatenate([camera_paths.quaternion_to_rotation(camera.wxyz),
                                       np.asarray(camera.position)[:, None]], axis=1))
    cancelled = lambda: camera.update_timestamp != stamp or self.generation != generation
    rendered = self.renderer.render(pose, camera.fov, width, height, self.output.value,
                                    cancelled if refine else lambda: False)
    if rendered is None:
      return
    frame, depth = rendered
    browser.client.scene.set_background_image(frame, format="jpeg", jpeg_quality=90, depth=depth)
    browser.shown_stamp, browser.shown_generation, browser.refined = stamp, generation, refine or height == full

  def _advance_playback(self, browser, now):
    if browser.playback is None:
      return
    poses, fovs, fps, start = browser.playback
    frame = int((now - start) * fps)
    if frame >= len(poses):
      browser.playback = None
      return
    cv = opencv_pose(poses[frame])
    browser.client.camera.wxyz = camera_paths.rotation_to_quaternion(cv[:, :3])
    browser.client.camera.position = cv[:, 3]
    browser.client.camera.fov = float(fovs[frame])


def latest_checkpoint_step(workdir):
  """The step of the newest finished checkpoint in workdir/checkpoints, or None: on local disk orbax renames a
  save's temporary folder to the bare step number when it is complete, on gs:// it adds commit_success.txt."""
  folder = storage.join(workdir, "checkpoints")
  try:
    names = storage.listdir(folder)
  except FileNotFoundError:
    return None
  complete = lambda name: not storage.is_url(folder) or storage.exists(storage.join(folder, name,
                                                                                   "commit_success.txt"))
  steps = [int(name) for name in names if name.isdigit() and complete(name)]
  return max(steps) if steps else None


def open_viewer(config, workdir, port, frame_budget=0.3):
  """The Viewer of the latest checkpoint in workdir (view.py), and a function that reloads a newer checkpoint
  when training has written one (returns whether it did)."""
  viser = import_viser()
  views = loaders.load_views(config, "train")
  scene = workdir_lib.run_scene(workdir, loaders.scene_of(config, views))
  model, state = state_lib.restore_trained(config, workdir, scene)
  renderer = SceneRenderer(model, scene, config, views)
  renderer.set_variables(rendering.render_variables(state, config, scene), int(state.step))
  renderer.warm_up()
  viewer = Viewer(viser, port, renderer, views, storage.join(workdir, "camera_paths"), frame_budget)
  viewer.show_scene_box(scene.scene_box)
  viewer.set_status(f"checkpoint of step {renderer.step}")

  def reload_newer():
    step = latest_checkpoint_step(workdir)
    if step is None or step <= renderer.step:
      return False
    _, newer = state_lib.restore_trained(config, workdir, scene, step)
    renderer.set_variables(rendering.render_variables(newer, config, scene), step)
    viewer.set_status(f"checkpoint of step {step}")
    viewer.generation += 1
    return True

  return viewer, reload_newer


def serve(viewer, reload_newer, poll_seconds=2.0):
  """view.py's loop, until Ctrl-C: render for the browsers whenever there is something to render, and look for a
  newer checkpoint every poll_seconds."""
  last_poll = time.time()
  while True:
    if time.time() - last_poll >= poll_seconds:
      reload_newer()
      last_poll = time.time()
    if viewer.work() == 0.0:
      time.sleep(0.02)


class TrainingViewer:
  """The viewer inside the training loop: after each step it renders only while rendering has taken at most
  `share` of the wall time since it started (so training keeps at least 1 - share of its speed with a browser
  attached, and all of it with none), shows step, loss and PSNR, and holds training while "Pause training" is
  ticked and a browser is connected (a closed browser resumes it)."""

  def __init__(self, config, scene, model, views, port, path_dir, share=0.1, frame_budget=0.3):
    self.config, self.scene, self.share = config, scene, share
    self.renderer = SceneRenderer(model, scene, config, views)
    self.viewer = Viewer(import_viser(), port, self.renderer, views, path_dir, frame_budget,
                         refine_budget=4 * frame_budget)
    self.viewer.show_scene_box(scene.scene_box)
    self.viewer.add_pause_control()
    self.started, self.rendering_seconds, self.last_status = time.perf_counter(), 0.0, 0.0

  @property
  def url(self):
    return self.viewer.url

  def warm_up(self, state):
    """Compile the render function before training starts (seconds, once), so that the first browser does not
    wait for it and its time does not count against the share."""
    self.renderer.set_variables(rendering.render_variables(state, self.config, self.scene), int(state.step))
    self.renderer.warm_up()
    self.started = time.perf_counter()

  def after_step(self, step, state, metrics):
    """Called after each training step with its (device) metrics."""
    if not self.viewer.connected():
      return
    now = time.perf_counter()
    if now - self.last_status >= 1.0:
      self.last_status = now
      self.viewer.set_status(f"step {step}: loss {float(metrics['loss']):.4f}, PSNR {float(metrics['psnr']):.2f} dB"
                             + (" (paused)" if self.viewer.paused else ""))
    prepare = lambda: self.renderer.set_variables(rendering.render_variables(state, self.config, self.scene), step)
    if self.rendering_seconds <= self.share * (now - self.started):
      self.rendering_seconds += self.viewer.work(prepare)
    paused_at = time.perf_counter()
    while self.viewer.paused and self.viewer.connected():
      if self.viewer.work(prepare) == 0.0:
        time.sleep(0.05)
    self.started += time.perf_counter() - paused_at  # a pause's renders do not count against the share

  def close(self):
    self.viewer.stop()
