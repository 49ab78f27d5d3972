"""jax-inpaint: fill the missing part of an image with a pretrained StyleGAN2, in JAX.

Layout, lowest layer first (a module imports only from its own layer or lower ones;
tests/test_imports.py checks it):

    errors, files, images, masks      numpy-only basics: errors, safe writing, image files, hole masks,
    allocator                         and the host allocator's settings (glibc malloc, for XLA:CPU)
    models/                           the networks (StyleGAN2, LPIPS, CLIP, ViT), model folders, shipped models
    inversion/                        options (config), objective, compiled search, the Inpainter driver, outputs
    study/                            metrics, baselines, the robustness evaluation and its report
    generate, score, batch, demo/, cli    the commands

The package's names are imported lazily (PEP 562): `import jax_inpaint` and `jax-inpaint --help`
load neither jax nor flax; `jax_inpaint.load_generator` (and the others below) import them on
first use. The module paths of earlier versions (`jax_inpaint.inpaint`, `jax_inpaint.lpips`, ...)
still import, as aliases of the modules' new places (`_MOVED`).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from jax_inpaint.errors import InputError

__version__ = "0.1.0"

_LAZY = {
    "Generator": "jax_inpaint.models.stylegan2",
    "GeneratorConfig": "jax_inpaint.models.stylegan2",
    "Discriminator": "jax_inpaint.models.stylegan2",
    "DiscriminatorConfig": "jax_inpaint.models.stylegan2",
    "load_generator": "jax_inpaint.models.stylegan2",
    "load_discriminator": "jax_inpaint.models.stylegan2",
    "InpaintConfig": "jax_inpaint.inversion.config",
    "Inpainter": "jax_inpaint.inversion.inpainter",
    "InpaintResult": "jax_inpaint.inversion.inpainter",
    "save_result": "jax_inpaint.inversion.outputs",
    "tune_host_allocator": "jax_inpaint.allocator",
}

# Where the modules of the flat layout (up to 0.1) went.
_MOVED = {
    "ops": "models.ops", "stylegan2": "models.stylegan2", "transformer": "models.transformer",
    "lpips": "models.lpips", "clip": "models.clip", "vit": "models.vit", "checkpoint": "models.folders",
    "assets": "models.shipped",
    "recipe": "inversion.config", "objective": "inversion.objective", "search": "inversion.search",
    "inpaint": "inversion.inpainter",
    "metrics": "study.metrics", "baselines": "study.baselines", "evaluate": "study.evaluate",
    "report": "study.report",
}

__all__ = ["InputError", "__version__", *_LAZY]


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import jax_inpaint.<old name>` gives the module at its new place (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, name = fullname.rpartition(".")
        if pkg == __name__ and name in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{_MOVED[spec.name.rpartition('.')[2]]}")
        spec.loader_state = (module.__spec__, module.__loader__)  # the import system puts the alias's on it
        return module

    def exec_module(self, module):
        module.__spec__, module.__loader__ = module.__spec__.loader_state  # give the module back its own


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED[name]}")
    raise AttributeError(f"module 'jax_inpaint' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
