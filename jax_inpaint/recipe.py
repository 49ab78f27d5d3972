"""Inpainting options: one frozen dataclass holds every option and its default (the original study's
recipe); YAML files in `configs/` override some of them; the CLI overrides those again.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Mapping

import yaml

from jax_inpaint.errors import InputError

CONFIG_DIRS = [pathlib.Path(__file__).resolve().parent.parent / "configs", pathlib.Path(__file__).parent / "configs"]

_CHOICES = {
    "space": ("w", "w+"),
    "init": ("w_avg", "z"),
    "noise": ("const", "random", "optimize"),
    "schedule": ("exponential", "nvidia"),
    "lpips_mask": ("input", "feature"),
    "attr_loss": ("bce", "margin", "lse"),
}


@dataclasses.dataclass(frozen=True)
class InpaintConfig:
    """Every option of a masked latent search. Field docs are the CLI's help texts."""

    # The search.
    steps: int = 400
    """Optimisation steps per seed."""
    space: str = "w+"
    """Latent space: 'w' (one w for all layers) or 'w+' (one w per layer)."""
    init: str = "w_avg"
    """Start at 'w_avg' plus per-seed jitter, or at a mapped random 'z' (truncated by init_trunc)."""
    init_jitter: float = 0.3
    """Std of the per-seed jitter added to w_avg, in units of w_std (the per-channel spread of mapped w)."""
    init_trunc: float = 0.7
    """Truncation psi of the mapped z used by init='z'."""
    noise: str = "random"
    """Per-layer noise: 'const' (the checkpoint's), 'random' (fixed, drawn per seed) or 'optimize'."""
    # The optimiser.
    schedule: str = "exponential"
    """Learning-rate schedule: 'exponential' decay (the study) or 'nvidia' (projector: warm-up, cosine ramp-down)."""
    lr: float = 0.05
    """Initial (peak) learning rate of Adam."""
    lr_decay: float = 0.1
    """exponential: the learning rate is multiplied by this over the whole run."""
    lr_rampup: float = 0.05
    """nvidia: fraction of the run spent warming up."""
    lr_rampdown: float = 0.25
    """nvidia: fraction of the run spent in the cosine ramp-down."""
    w_noise: float = 0.0
    """Std of the noise added to w at step 0, in units of w_std, decaying to 0 (NVIDIA's projector: 0.05 x sqrt(w_dim))."""
    w_noise_ramp: float = 0.75
    """Fraction of the run over which the w noise decays to zero."""
    # The objective.
    mse: float = 1.0
    """Weight of the masked MSE (mean over known pixels, images in [-1, 1])."""
    lpips: float = 1.0
    """Weight of the masked LPIPS (VGG16 v0.1)."""
    lpips_mask: str = "input"
    """How LPIPS ignores the hole: 'input' (mask the images, as the study) or 'feature' (average over known positions)."""
    lpips_resize: int = 256
    """Area-resize images larger than this before LPIPS (NVIDIA's projector uses 256); 0 = never."""
    noise_reg: float = 1e5
    """Weight of NVIDIA's noise regularisation (only with noise='optimize')."""
    w_avg_reg: float = 0.0
    """Weight of the L2 pull of w toward w_avg (mean over layers and channels)."""
    realism: float = 0.0
    """Weight of the discriminator realism term softplus(-D(G(w))) (needs a converted D)."""
    attr_weight: float = 1.0
    """Weight of the attribute-classifier term (when attribute targets are given)."""
    attr_loss: str = "bce"
    """Attribute loss: 'bce', 'margin' = max(BCE, eps) or 'lse' = log(exp(BCE) + exp(eps))."""
    attr_epsilon: float = 0.1
    """eps of the margin / LogSumExp attribute losses (a BCE of 0.1 is a probability of about 0.9)."""
    clip_weight: float = 1.0
    """Weight of the CLIP term, 1 - cosine similarity to each prompt (when prompts are given)."""
    # Running it.
    chunk: int = 25
    """Steps per compiled chunk between progress updates (no host round trip inside a chunk)."""
    batch: int = 0
    """Seeds optimised at once; 0 = all of them (split into batches when they do not fit in memory)."""
    feather: float = 2.0
    """Width in pixels of the seam where known pixels are blended with the completion."""

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise InputError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.steps < 1:
            raise InputError("steps must be at least 1")
        if self.chunk < 1 or self.batch < 0:
            raise InputError("chunk must be >= 1 and batch >= 0")

    def replace(self, **kw) -> "InpaintConfig":
        return dataclasses.replace(self, **kw)


def field_help() -> dict[str, str]:
    """Field name -> its docstring (read from the source, so the CLI help has one source)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(InpaintConfig))
    body = tree.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs


def defaults() -> dict[str, Any]:
    return dataclasses.asdict(InpaintConfig())


def find_preset(name_or_path: str) -> pathlib.Path:
    """A YAML path, or the name of a preset in configs/ ('default', 'nvidia', 'fast', 'demo')."""
    p = pathlib.Path(name_or_path)
    if p.is_file():
        return p
    for d in CONFIG_DIRS:
        for cand in (d / name_or_path, d / f"{name_or_path}.yaml"):
            if cand.is_file():
                return cand
    names = sorted({q.stem for d in CONFIG_DIRS if d.is_dir() for q in d.glob("*.yaml")})
    raise InputError(f"{name_or_path}: no such config file or preset (presets: {', '.join(names)})")


def load_config(name_or_path: str | None = None, **overrides) -> InpaintConfig:
    """Defaults, then the YAML file (if any), then the overrides whose value is not None."""
    values: dict[str, Any] = {}
    if name_or_path:
        path = find_preset(name_or_path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: expected a mapping of option: value")
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f for f in dataclasses.fields(InpaintConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"unknown inpainting options: {', '.join(unknown)}")
    typed = {}
    for k, v in values.items():
        t = type(getattr(InpaintConfig, k))
        try:
            typed[k] = t(v) if t in (int, float) and not isinstance(v, bool) else v
        except (TypeError, ValueError):
            raise InputError(f"option {k}: {v!r} is not a {t.__name__}") from None
    return InpaintConfig(**typed)


def write_defaults_yaml(path: str | os.PathLike) -> None:
    """Write the defaults as YAML, with each option's help as a comment (configs/default.yaml)."""
    helps = field_help()
    lines = ["# The default inpainting recipe (the original study's): generated from",
             "# jax_inpaint.recipe.InpaintConfig by `python -m jax_inpaint.recipe`; do not edit by hand.", ""]
    for k, v in defaults().items():
        lines.append(f"# {helps.get(k, '')}")
        lines.append(yaml.safe_dump({k: v}, default_flow_style=False).strip())
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":  # regenerate configs/default.yaml
    write_defaults_yaml(CONFIG_DIRS[0] / "default.yaml")
