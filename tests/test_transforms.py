"""transforms.json captures (Instant-NGP, nerfstudio): intrinsics, lens models, splits, normalisation, bad input."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import jaxnerf
from jaxnerf import config as config_lib
from jaxnerf.data import blender
from jaxnerf.data import loaders
from jaxnerf.data import transforms
from jaxnerf.errors import ConfigError
from jaxnerf.errors import DataError
from jaxnerf.data import scene as scene_lib

DEMO = jaxnerf.DEMO_SCENE


def demo_scene(root, **camera):
  """A transforms.json of the demo's train and test frames, with the demo's split, next to links to its photos."""
  os.makedirs(root, exist_ok=True)
  frames, lists = [], {}
  for split in ("train", "test"):
    os.symlink(os.path.join(DEMO, split), os.path.join(root, split))
    with open(os.path.join(DEMO, f"transforms_{split}.json")) as f:
      meta = json.load(f)
    frames += meta["frames"]
    lists[f"{split}_filenames"] = [frame["file_path"] + ".png" for frame in meta["frames"]]
  document = {"camera_angle_x": meta["camera_angle_x"], **camera, "frames": frames, **lists}
  with open(os.path.join(root, "transforms.json"), "w") as f:
    json.dump(document, f)
  return document


def reference_directions(pose, fx, fy, cx, cy, height, width):
  """float64 per-pixel ray directions (camera z = -1) through pixel centres of a pinhole camera."""
  directions = np.empty((height, width, 3))
  for i in range(height):
    for j in range(width):
      camera = np.array([(j + 0.5 - cx) / fx, -(i + 0.5 - cy) / fy, -1.0])
      directions[i, j] = pose[:3, :3] @ camera
  return directions


def test_demo_as_transforms_json_gives_the_blender_loaders_rays(tmp_path):
  root = str(tmp_path / "scene")
  demo_scene(root)
  for split in ("train", "test"):
    expected = blender.load_split(DEMO, split)
    views = transforms.load_split(root, split, normalize=False, near=2.0, far=6.0)
    assert views.names == expected.names
    np.testing.assert_array_equal(views.images, expected.images)
    np.testing.assert_array_equal(views.alpha, expected.alpha)
    np.testing.assert_array_equal(views.cam_to_world, expected.cam_to_world)
    assert views.camera_model == "pinhole"
    for view in (0, len(views) - 1):
      for a, b in zip(views.image_rays(view), expected.image_rays(view)):
        np.testing.assert_array_equal(a, b)


def test_off_centre_principal_point_and_unequal_focals(tmp_path):
  root = str(tmp_path / "scene")
  camera = {"fl_x": 140.0, "fl_y": 120.0, "cx": 43.0, "cy": 58.5, "w": 100, "h": 100}
  document = demo_scene(root, **camera)
  views = transforms.load_split(root, "test", normalize=False, near=2.0, far=6.0, stride=50)
  pose = np.asarray(document["frames"][100]["transform_matrix"])
  np.testing.assert_allclose(views.intrinsics[0], [140.0, 120.0, 43.0, 58.5])
  rays = views.image_rays(0)
  np.testing.assert_allclose(rays.directions, reference_directions(pose, 140.0, 120.0, 43.0, 58.5, 100, 100),
                             atol=1e-6)
  np.testing.assert_allclose(rays.origins, np.broadcast_to(pose[:3, 3], (100, 100, 3)), atol=1e-6)
  # Downsampled by 2 (area averaging here): the intrinsics halve with the image.
  half = transforms.load_split(root, "test", factor=2, normalize=False, near=2.0, far=6.0, stride=50)
  np.testing.assert_allclose(half.intrinsics[0], [70.0, 60.0, 21.5, 29.25])
  # Normalised: the same rays in the scene frame, and the recorded transform maps them back.
  normalised = transforms.load_split(root, "test", stride=50)
  world_from_scene = np.linalg.inv(normalised.scene_from_world)
  scene_rays = normalised.image_rays(0)
  back_origins = scene_rays.origins @ world_from_scene[:3, :3].T + world_from_scene[:3, 3]
  np.testing.assert_allclose(back_origins, rays.origins, atol=1e-4)
  np.testing.assert_allclose(scene_rays.viewdirs @ (world_from_scene[:3, :3].T / np.cbrt(
      np.linalg.det(world_from_scene[:3, :3]))), rays.viewdirs, atol=1e-5)
  assert np.all(np.linalg.norm(transforms.load_split(root, "train").cam_to_world[:, :, 3], axis=-1) <= 1 + 1e-6)


def write_capture(root, frames, size=(8, 6), **camera):
  """A transforms.json and small random photos, one per frame dict (file_path and pose filled in)."""
  os.makedirs(os.path.join(root, "images"), exist_ok=True)
  rng = np.random.default_rng(0)
  for i, frame in enumerate(frames):
    frame.setdefault("file_path", f"images/frame_{i:03d}.png")
    pose = np.eye(4)
    pose[:3, 3] = [np.cos(i), np.sin(i), 0.1 * i]
    frame.setdefault("transform_matrix", pose.tolist())
    path = os.path.join(root, frame["file_path"])
    if not os.path.splitext(path)[1]:
      path += ".png"
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
  with open(os.path.join(root, "transforms.json"), "w") as f:
    json.dump({**camera, "frames": frames}, f)


def test_per_frame_intrinsics_override_and_distortion(tmp_path):
  root = str(tmp_path / "scene")
  write_capture(root, [{}, {"fl_x": 9.0, "cx": 3.0, "k1": 0.1}, {"file_path": "images/no_extension"}],
                fl_x=7.0, fl_y=7.5, k1=-0.2, p1=0.01, camera_model="OPENCV")
  views = transforms.load_split(root, "train", hold=100, normalize=False, near=0.1, far=5.0)
  assert views.camera_model == "opencv" and views.names == ["images/frame_001", "images/no_extension"]
  np.testing.assert_allclose(views.intrinsics, [[9.0, 7.5, 3.0, 3.0], [7.0, 7.5, 4.0, 3.0]])
  np.testing.assert_allclose(views.distortion, [[0.1, 0, 0, 0, 0.01, 0], [-0.2, 0, 0, 0, 0.01, 0]])


def test_fisheye_and_camera_angle(tmp_path):
  root = str(tmp_path / "scene")
  write_capture(root, [{}, {}], camera_angle_x=1.2, camera_angle_y=1.0, is_fisheye=True, k1=0.05)
  views = transforms.load_split(root, "test", normalize=False, near=0.1, far=5.0)
  assert views.camera_model == "opencv_fisheye"
  np.testing.assert_allclose(views.intrinsics[0], [4 / np.tan(0.6), 3 / np.tan(0.5), 4.0, 3.0], rtol=1e-6)


def test_hold_out_split_and_listed_split(tmp_path):
  root = str(tmp_path / "scene")
  write_capture(root, [{} for _ in range(10)], fl_x=7.0)
  test = transforms.load_split(root, "test", hold=4)
  train = transforms.load_split(root, "train", hold=4)
  assert test.names == [f"images/frame_{i:03d}" for i in (0, 4, 8)]
  assert train.names == [f"images/frame_{i:03d}" for i in (1, 2, 3, 5, 6, 7, 9)]
  assert train.split_names["test"] == test.names
  with open(os.path.join(root, "transforms.json")) as f:
    document = json.load(f)
  document["train_filenames"] = ["images/frame_002.png", "images/frame_005.png"]
  document["test_filenames"] = ["images/frame_009.png"]
  with open(os.path.join(root, "transforms.json"), "w") as f:
    json.dump(document, f)
  assert transforms.load_split(root, "train").names == ["images/frame_002", "images/frame_005"]
  assert transforms.load_split(root, "val").names == ["images/frame_009"]


def test_nerfstudio_downscaled_folder(tmp_path):
  root = str(tmp_path / "scene")
  write_capture(root, [{}, {}], size=(8, 6), fl_x=7.0, w=8, h=6)
  os.makedirs(os.path.join(root, "images_2"))
  for i in range(2):
    Image.fromarray(np.full((3, 4, 3), 10 * (i + 1), np.uint8)).save(os.path.join(root, f"images_2/frame_{i:03d}.png"))
  views = transforms.load_split(root, "train", factor=2, hold=100, normalize=False, near=0.1, far=5.0)
  np.testing.assert_allclose(views.images[0], 20 / 255.0)  # the copy's pixels, not an average of the original
  np.testing.assert_allclose(views.intrinsics[0], [3.5, 3.5, 2.0, 1.5])


def test_sixteen_bit_photo_through_the_loader(tmp_path):
  root = str(tmp_path / "scene")
  write_capture(root, [{}, {}], fl_x=7.0)
  grey = np.linspace(0, 65535, 48).reshape(6, 8).astype(np.uint16)
  Image.fromarray(grey).save(os.path.join(root, "images/frame_001.png"))
  views = transforms.load_split(root, "train", hold=100, normalize=False, near=0.1, far=5.0)
  np.testing.assert_allclose(views.images[0], np.repeat((grey / 65535.0)[..., None], 3, -1), atol=1e-6)


def test_scene_description_has_the_normalisation_and_split(tmp_path):
  root = str(tmp_path / "scene")
  write_capture(root, [{} for _ in range(9)], fl_x=7.0)
  config = config_lib.base_config()
  config.data.dataset = "transforms"
  config.data.data_dir = root
  views = loaders.load_views(config, "train")
  scene = loaders.scene_of(config, views)
  np.testing.assert_allclose(scene.scene_from_world_matrix, views.scene_from_world)
  assert not np.allclose(scene.scene_from_world_matrix, np.eye(4))
  assert scene.test_frames == ("images/frame_000", "images/frame_008")
  assert (scene.near, scene.far) == (views.near, views.far)
  assert scene_lib.Scene.from_json(scene.to_json(), "scene.json") == scene


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("fl_x"), r"frame 0 \(images/frame_000.png\): the focal length is missing"),
    (lambda d: d.update(camera_model="EQUIRECTANGULAR"), "'camera_model' must be one of"),
    (lambda d: d.update(w=9), "the photo is 8x6 pixels, but 'w' says 9"),
    (lambda d: d["frames"][1]["transform_matrix"][0].__setitem__(3, float("nan")), "frame 1 .*non-finite"),
    (lambda d: d.update(frames=[]), "'frames' is empty"),
    (lambda d: d["frames"][0].update(file_path="images/missing.png"), "missing.png: image file not found"),
    (lambda d: d.update(fl_x="7"), "'fl_x' must be a finite number"),
    (lambda d: d.update(k1=float("inf")), "'k1' must be a finite number"),
    (lambda d: d["frames"][0].update(file_path="../outside.png"), "must be a path inside the scene folder"),
])
def test_bad_input_is_one_line_naming_file_and_field(tmp_path, change, message):
  root = str(tmp_path / "scene")
  write_capture(root, [{}, {}], fl_x=7.0, w=8, h=6)
  path = os.path.join(root, "transforms.json")
  with open(path) as f:
    document = json.load(f)
  change(document)
  with open(path, "w") as f:
    json.dump(document, f)
  with pytest.raises(DataError, match=message) as error:
    transforms.load_split(root, "test", hold=100)  # frame 0
  assert str(error.value).startswith(path) or str(error.value).startswith(root)
  assert "\n" not in str(error.value)


def test_folder_without_a_transforms_file(tmp_path):
  with pytest.raises(DataError, match="transforms.json: file not found"):
    transforms.load_split(str(tmp_path), "train")
  with pytest.raises(ConfigError, match="data.transforms.hold"):
    transforms.load_split(str(tmp_path), "train", hold=1)


def test_colmap_model_built_from_known_cameras_reads_back(tmp_path):
  pycolmap = pytest.importorskip("pycolmap")
  root = tmp_path / "scene"
  (root / "images").mkdir(parents=True)
  reconstruction = pycolmap.Reconstruction()
  params = [50.0, 55.0, 15.5, 11.0, 0.01, -0.002, 0.001, 0.0005]
  camera = pycolmap.Camera(model="OPENCV", width=32, height=24, params=params, camera_id=1)
  reconstruction.add_camera_with_trivial_rig(camera)
  rng = np.random.default_rng(0)
  expected = {}
  for image_id in range(1, 5):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    cam_from_world = np.concatenate([q, rng.normal(size=(3, 1))], axis=1)
    name = f"photo_{image_id}.png"
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / "images" / name)
    image = pycolmap.Image(name=name, camera_id=1, image_id=image_id)
    reconstruction.add_image_with_trivial_frame(image, pycolmap.Rigid3d(cam_from_world))
    # OpenGL camera-to-world, written out: centre -R^T t, axes R^T with y and z flipped.
    pose = np.eye(4)
    pose[:3, :3] = q.T * [1, -1, -1]
    pose[:3, 3] = -q.T @ cam_from_world[:, 3]
    expected[f"images/photo_{image_id}"] = pose[:3]
  (root / "sparse" / "0").mkdir(parents=True)
  reconstruction.write(str(root / "sparse" / "0"))
  views = transforms.load_split(str(root), "train", hold=1000, normalize=False, near=0.1, far=9.0)
  assert views.names == [f"images/photo_{i}" for i in range(2, 5)] and views.camera_model == "opencv"
  for name, pose in zip(views.names, views.cam_to_world):
    np.testing.assert_allclose(pose, expected[name], atol=1e-6)
  np.testing.assert_allclose(views.intrinsics, np.tile(params[:4], (3, 1)), rtol=1e-6)
  np.testing.assert_allclose(views.distortion[0], [0.01, -0.002, 0, 0, 0.001, 0.0005], rtol=1e-6)
  # A projected point lands where pycolmap projects it.
  point = np.array([0.3, -0.2, 4.0])
  world_point = np.linalg.inv(np.vstack([np.concatenate([q, cam_from_world[:, 3:]], 1), [0, 0, 0, 1]]))[:3] @ [
      *point, 1.0]
  pixel = np.asarray(camera.img_from_cam(point[None]))[0]
  rays = views.pixel_rays(np.array([2]), np.array([int(pixel[0])]), np.array([int(pixel[1])]))
  direction = world_point - rays.origins[0]
  cosine = direction @ rays.viewdirs[0] / np.linalg.norm(direction)
  assert cosine > np.cos(1.5 / 50.0)  # within a pixel or so of the ray through the pixel containing it


def test_a_process_share_holds_its_photos_with_every_views_camera(tmp_path):
  root = str(tmp_path / "scene")
  # Frame 0 is held out (hold=100): 5 training views, each with its own focal length.
  write_capture(root, [{"fl_x": 10.0 + i} for i in range(6)], fl_y=7.5)
  every = transforms.load_split(root, "train", hold=100, normalize=False, near=0.1, far=5.0)
  for index in range(2):
    share = transforms.load_split(root, "train", hold=100, normalize=False, near=0.1, far=5.0, share=(index, 2))
    assert share.held.tolist() == list(range(index, 5, 2)) and len(share) == 5
    np.testing.assert_array_equal(share.images, every.images[share.held])
    np.testing.assert_array_equal(share.alpha, every.alpha[share.held])
    np.testing.assert_array_equal(share.intrinsics, every.intrinsics)
    np.testing.assert_array_equal(share.cam_to_world, every.cam_to_world)
  with pytest.raises(DataError, match="5 training views cannot be shared by 6 processes"):
    transforms.load_split(root, "train", hold=100, normalize=False, near=0.1, far=5.0, share=(0, 6))
