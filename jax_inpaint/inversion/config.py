"""Inpainting options: one frozen dataclass holds every option and its default (the original study's
recipe); YAML files in `configs/` override some of them; the CLI overrides those again.

This is also the one place where options are validated: `check_option` (each value's type and range,
whether it comes from the CLI, a YAML file or the Python API), `check_combination` (what they mean
together) and `check_seeds`. A bad value is a one-line InputError naming the option as the CLI spells it.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import os
import pathlib
import re
from typing import Any, Mapping

import yaml

from jax_inpaint.errors import InputError

# configs/ at the top of a checkout, or installed beside the package as jax_inpaint/configs
CONFIG_DIRS = [pathlib.Path(__file__).resolve().parents[2] / "configs", pathlib.Path(__file__).resolve().parents[1] / "configs"]

CHOICES = {
    "space": ("w", "w+"),
    "init": ("w_avg", "z"),
    "noise": ("const", "random", "optimize"),
    "schedule": ("exponential", "nvidia"),
    "lpips_mask": ("input", "feature"),
    "attr_loss": ("bce", "margin", "lse"),
    "loop": ("auto", "scan", "host"),
    "remat": ("auto", "off", "blocks"),
    "diversity_space": ("pixels", "lpips"),
}

# The one validation layer of the inpainting options: every field's type and range. A number field
# takes an int or a float (a bool or a string is refused, also from YAML); an int field takes a float
# only when it is a whole number (`steps: 3.7` is refused, not run as 3); every number must be finite.
MAX_STEPS = 1_000_000  # the loss history alone is steps x seeds x terms floats
MAX_CHUNK = 10_000  # a chunk runs all its steps (past `steps` too): a huge one would never end
LPIPS_MIN_SIZE = 16  # = models.lpips.MIN_SIZE (asserted by tests/test_lpips.py; this module stays jax-free)
_INTS = {"steps", "lpips_resize", "chunk", "batch"}
# name -> (lowest, lowest allowed?, highest, highest allowed?)
_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "steps": (1, True, MAX_STEPS, True),
    "init_jitter": (0, True, math.inf, False),
    "init_trunc": (0, False, math.inf, False),
    "lr": (0, False, math.inf, False),
    "lr_decay": (0, False, 1, True),
    "lr_rampup": (0, False, 1, True),  # 0 would divide by zero in NVIDIA's ramp (lr = nan)
    "lr_rampdown": (0, False, 1, True),
    "w_noise": (0, True, math.inf, False),
    "w_noise_ramp": (0, False, 1, True),
    "mse": (0, True, math.inf, False),
    "lpips": (0, True, math.inf, False),
    "lpips_resize": (0, True, math.inf, False),
    "noise_reg": (0, True, math.inf, False),
    "w_avg_reg": (0, True, math.inf, False),
    "realism": (0, True, math.inf, False),
    "attr_weight": (0, True, math.inf, False),
    "attr_epsilon": (0, True, math.inf, False),
    "clip_weight": (0, True, math.inf, False),
    "diversity": (0, True, math.inf, False),
    "chunk": (1, True, MAX_CHUNK, True),
    "batch": (0, True, math.inf, False),
    "feather": (0, True, math.inf, False),
}


def option_name(name: str) -> str:
    """A field as the command line spells it: lr_decay -> --lr-decay."""
    return f"--{name.replace('_', '-')}"


def _num(x) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) >= 1e4 else f"{x:g}"


def _range_text(lo, lo_in, hi, hi_in) -> str:
    if hi == math.inf:
        return f"{'>=' if lo_in else '>'} {_num(lo)}"
    return f"in {'[' if lo_in else '('}{_num(lo)}, {_num(hi)}{']' if hi_in else ')'}"


def check_option(name: str, value, where: str | None = None):
    """One option's value, type-checked and range-checked: the value (an int field as int, a number
    field as float), or a one-line InputError naming the option (`where`: how to name it, default
    its command-line spelling)."""
    where = where or option_name(name)
    if name in CHOICES:
        if not isinstance(value, str) or value not in CHOICES[name]:
            raise InputError(f"{where} must be one of {', '.join(CHOICES[name])} (got {value!r})")
        return value
    if name not in _RANGES:
        raise InputError(f"unknown inpainting option {name!r}")
    is_int = name in _INTS
    kind = "a whole number" if is_int else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        got = f"the string {value!r}" if isinstance(value, str) else f"{value!r}"
        raise InputError(f"{where} must be {kind} (got {got})")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{where} must be a finite number (got {value})")
    if is_int:
        if not value.is_integer():
            raise InputError(f"{where} must be a whole number (got {value:g})")
        value = int(value)
    lo, lo_in, hi, hi_in = _RANGES[name]
    if value < lo or (value == lo and not lo_in) or value > hi or (value == hi and not hi_in):
        raise InputError(f"{where} must be {_range_text(lo, lo_in, hi, hi_in)} (got {_num(value)})")
    if name == "lpips_resize" and 0 < value < LPIPS_MIN_SIZE:
        raise InputError(f"{where} must be 0 (never resize) or at least {LPIPS_MIN_SIZE}: LPIPS's VGG16 needs "
                         f"images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels (got {value})")
    return value


def check_combination(cfg: "InpaintConfig") -> None:
    """What the options mean together."""
    if cfg.mse <= 0 and cfg.lpips <= 0:
        raise InputError("--mse and --lpips are both 0: nothing would match the known pixels (a prompt or an "
                         "attribute alone ignores them); give one of them a weight > 0")


MAX_SEEDS = 1_000_000
MAX_SEED = 2**32 - 1
# The seeds of the K completions when none are given: inpaint(), run_batch(), evaluate() and the
# --seeds of `inpaint`, `inpaint-batch` and `evaluate` (README: 0-7).
DEFAULT_SEEDS = range(8)


def check_seeds(seeds, what: str = "--seeds") -> list[int]:
    """A list of distinct whole numbers in [0, 2**32 - 1] (what NumPy's and JAX's seeding take), at most
    MAX_SEEDS of them; otherwise a one-line InputError."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        seeds = list(seeds) if not isinstance(seeds, (str, bytes)) else [seeds]
    if len(seeds) > MAX_SEEDS:
        raise InputError(f"{what}: {len(seeds)} seeds, at most {MAX_SEEDS:,} are allowed")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            if isinstance(s, numbers.Real) and not isinstance(s, bool) and float(s).is_integer():
                s = int(s)
            else:
                raise InputError(f"{what}: {s!r} is not a whole number")
        s = int(s)
        if not 0 <= s <= MAX_SEED:
            raise InputError(f"{what}: seed {s} is out of range: seeds are whole numbers in [0, {MAX_SEED}]")
        out.append(s)
    if not out:
        raise InputError(f"{what}: no seeds given")
    if len(set(out)) != len(out):
        dup = sorted(s for s, n in collections.Counter(out).items() if n > 1)[:5]
        raise InputError(f"{what}: seeds must be distinct (repeated: {', '.join(map(str, dup))})")
    return out


def untraced(default, why: str):
    """A field of InpaintConfig that does not change the compiled search program (it acts before or
    after it): `why` says where it acts. Every other field is traced: it is part of the program's
    cache key (`inversion.objective.ProgramSpec`), so a new option recompiles unless marked here."""
    return dataclasses.field(default=default, metadata={"traced": False, "why": why})


def is_traced(field: dataclasses.Field) -> bool:
    return field.metadata.get("traced", True)


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
    diversity: float = 0.0
    """Weight of the joint diversity term: minus the mean pairwise distance between the hole contents of the seeds of one image (0 = each seed optimised alone)."""
    diversity_space: str = "pixels"
    """Where the diversity term measures distance: 'pixels' (RMS of the hole, box-filtered to at most 32x32) or 'lpips' (LPIPS between the hole contents, as the reported diversity; needs the LPIPS model)."""
    # Running it.
    chunk: int = 25
    """Steps between progress updates (and checks for Ctrl-C): the losses are read once per chunk."""
    loop: str = "auto"
    """How steps run: 'scan' (a chunk of steps in one compiled loop), 'host' (one compiled step per call, dispatched from Python) or 'auto' (host on CPU, where XLA runs a loop body ~2x slower than the same step alone; scan on GPU/TPU)."""
    remat: str = "auto"
    """Recompute each synthesis block in the backward pass instead of storing its activations: 'off', 'blocks', or 'auto' (blocks only when the seeds would not fit in memory at once otherwise)."""
    batch: int = untraced(0, "how seeds are grouped; the batch size is a key of its own (search.get_search)")
    """Seeds optimised at once; 0 = all of them, split into equal batches when the compiled search does not fit in memory (on CPU: at most 256, and without the diversity term at most 64 MB of the generator's largest feature map per batch: 4 seeds at 256x256, where larger batches are slower per seed)."""
    feather: float = untraced(2.0, "pastes the known pixels back after the search (inpainter.composite)")
    """Width in pixels of the seam where known pixels are blended with the completion."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_option(f.name, getattr(self, f.name)))
        check_combination(self)

    def replace(self, **kw) -> "InpaintConfig":
        unknown = sorted(set(kw) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise InputError(f"unknown inpainting options: {', '.join(unknown)}")
        return dataclasses.replace(self, **kw)

    def traced(self) -> "InpaintConfig":
        """This config with every untraced option at its default: what the compiled program depends on
        (equal for two configs that compile to the same program)."""
        return dataclasses.replace(self, **{f.name: f.default for f in dataclasses.fields(self) if not is_traced(f)})


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


def check_prompts(prompts, what: str = "--prompt") -> tuple[tuple[str, float], ...]:
    """CLIP prompts, as texts or (text, weight) pairs -> ((text, weight), ...): every text non-empty,
    every weight a finite number > 0; otherwise a one-line InputError."""
    out = []
    for p in prompts or ():
        if isinstance(p, str):
            text, weight = p, 1.0
        elif isinstance(p, (tuple, list)) and len(p) == 2:
            text, weight = p
        else:
            raise InputError(f"{what}: a prompt must be a text or a (text, weight) pair (got {p!r:.40})")
        if not isinstance(text, str):
            raise InputError(f"{what}: a prompt must be text (got {text!r})")
        if not text.strip():
            raise InputError(f"{what} {text!r}: the prompt is empty (give the text the hole should match)")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) \
                or weight <= 0:
            raise InputError(f"{what} {text!r}: the weight must be a finite number > 0 (got {weight!r})")
        out.append((text, float(weight)))
    return tuple(out)


def parse_prompts(prompts, what: str = "--prompt") -> tuple[tuple[str, float], ...]:
    """Prompts as written by a user -> checked ((text, weight), ...) (check_prompts): each a text with an
    optional weight after the last '::' ('red hair::2'), or a (text, weight) pair; a single string holds
    several separated by '|' (a manifest cell); None or '' is none."""
    if prompts is None or (isinstance(prompts, str) and not prompts.strip()):
        return ()
    if isinstance(prompts, str):
        prompts = [p for p in prompts.split("|") if p.strip()]
    out = []
    for p in prompts:
        if not isinstance(p, str):
            out.append(p)
            continue
        text, sep, weight = p.rpartition("::")
        if not sep:
            out.append((p, 1.0))
            continue
        try:
            out.append((text, float(weight)))
        except ValueError:
            raise InputError(f"{what} {p!r}: the weight after '::' must be a number") from None
    return check_prompts(out, what)


def check_attributes(attributes, what: str = "--attribute") -> tuple[tuple[str, float], ...]:
    """Attribute targets {name: p} or (name, p) pairs -> ((name, p), ...): p a probability in [0, 1];
    a name given twice must ask for the same p (it is then kept once); otherwise a one-line InputError."""
    pairs = attributes.items() if isinstance(attributes, Mapping) else (attributes or ())
    out: dict[str, float] = {}
    for pair in pairs:
        name, p = pair
        name = str(name).strip()
        if not name:
            raise InputError(f"{what}: an attribute needs a name (NAME=P, e.g. Smiling=1)")
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
            raise InputError(f"{what} {name}={p}: targets are probabilities in [0, 1]")
        if name in out and out[name] != float(p):
            raise InputError(f"{what}: {name} is asked to be both {out[name]:g} and {float(p):g}")
        out[name] = float(p)
    return tuple(out.items())


MAX_CONFIG_BYTES = 1 << 20


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `lr: 1e-3` as a string; here an unquoted number is a number (a quoted one stays text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                   |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_config(name_or_path: str | None = None, **overrides) -> InpaintConfig:
    """Defaults, then the YAML file (if any), then the overrides whose value is not None.

    Every value is checked by `check_option` (a bad value in the file is named as `FILE: key`), the
    result by `check_combination`."""
    known = {f.name for f in dataclasses.fields(InpaintConfig)}
    values: dict[str, Any] = {}
    if name_or_path:
        path = find_preset(name_or_path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise InputError(f"{path}: larger than {MAX_CONFIG_BYTES >> 10} KiB: not a config file")
            data = yaml.load(raw.decode("utf-8"), Loader=_Loader) or {}
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text (UTF-8) file") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: expected a mapping of option: value")
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise InputError(f"{path}: unknown inpainting options: {', '.join(unknown)}")
        values.update({k: check_option(k, v, f"{path}: {k}") for k, v in data.items()})
    unknown = sorted(str(k) for k, v in overrides.items() if v is not None and k not in known)
    if unknown:
        raise InputError(f"unknown inpainting options: {', '.join(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return InpaintConfig(**values)


def write_defaults_yaml(path: str | os.PathLike) -> None:
    """Write the defaults as YAML, with each option's help as a comment (configs/default.yaml)."""
    helps = field_help()
    lines = ["# The default inpainting recipe (the original study's): generated from",
             "# jax_inpaint.inversion.config.InpaintConfig by `python -m jax_inpaint.inversion.config`; do not edit by hand.", ""]
    for k, v in defaults().items():
        lines.append(f"# {helps.get(k, '')}")
        lines.append(yaml.safe_dump({k: v}, default_flow_style=False).strip())
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":  # regenerate configs/default.yaml
    write_defaults_yaml(CONFIG_DIRS[0] / "default.yaml")
