"""StyleGAN2 checkpoints -> jax-inpaint model folders.

Sources: NVIDIA training pickles (stylegan2-ada-pytorch, or stylegan3's StyleGAN2 networks), read
without running their embedded code; rosinality `.pt` files (train.py or convert_weight.py layout);
NVIDIA-named state dicts (.npz, .safetensors, torch files) with their constructor kwargs as JSON.

Conversion is two tables of name patterns: rosinality -> NVIDIA names, and NVIDIA names -> our Flax
tree (with the transpose each needs). Every source tensor must be matched and every parameter of the
architecture filled, or the conversion fails with an error that lists the gaps.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from convert_weights import pickle_reader
from jax_inpaint.models import folders as checkpoint
from jax_inpaint.models.folders import _brief
from jax_inpaint.errors import InputError
from jax_inpaint.models.stylegan2 import (DiscriminatorConfig, DiscriminatorModule, GeneratorConfig, GeneratorModule,
                                   MappingNetwork)

KIND = "stylegan2"

# ---------------------------------------------------------------------------------------------
# Transforms (source layout -> ours).

def _same(a):
    return a


def _dense(a):  # [out, in] -> [in, out]
    return a.T


def _conv(a):  # OIHW -> HWIO
    return a.transpose(2, 3, 1, 0)


def _chw(a):  # [C, H, W] -> [H, W, C]
    return a.transpose(1, 2, 0)


def _scalar(a):
    return a.reshape(())


_GENERATOR_TABLE: list[tuple[str, str | None, Callable]] = [
    # (NVIDIA name pattern, our path template ('params/...' or 'buffers/...'), transform)
    (r"mapping\.w_avg", "buffers/w_avg", _same),
    (r"mapping\.(embed|fc\d+)\.weight", r"params/mapping/\1/weight", _dense),
    (r"mapping\.(embed|fc\d+)\.bias", r"params/mapping/\1/bias", _same),
    (r"synthesis\.(b\d+)\.const", r"params/synthesis/\1/const", _chw),
    (r"synthesis\.(b\d+)\.(conv[01]|torgb)\.affine\.weight", r"params/synthesis/\1/\2/affine/weight", _dense),
    (r"synthesis\.(b\d+)\.(conv[01]|torgb)\.affine\.bias", r"params/synthesis/\1/\2/affine/bias", _same),
    (r"synthesis\.(b\d+)\.(conv[01]|torgb|skip)\.weight", r"params/synthesis/\1/\2/weight", _conv),
    (r"synthesis\.(b\d+)\.(conv[01]|torgb)\.bias", r"params/synthesis/\1/\2/bias", _same),
    (r"synthesis\.(b\d+)\.(conv[01])\.noise_strength", r"params/synthesis/\1/\2/noise_strength", _scalar),
    (r"synthesis\.(b\d+)\.(conv[01])\.noise_const", r"buffers/synthesis/\1/\2/noise_const", _same),
    (r"synthesis\.(.+\.)?resample_filter", None, _same),  # the constant [1,3,3,1] filter: checked, not stored
]

_DISCRIMINATOR_TABLE: list[tuple[str, str | None, Callable]] = [
    (r"(b\d+)\.(fromrgb|conv0|conv1|skip|conv)\.weight", r"params/\1/\2/weight", _conv),
    (r"(b\d+)\.(fromrgb|conv0|conv1|conv)\.bias", r"params/\1/\2/bias", _same),
    (r"b4\.(fc|out)\.weight", r"params/b4/\1/weight", _dense),
    (r"b4\.(fc|out)\.bias", r"params/b4/\1/bias", _same),
    (r"mapping\.(embed|fc\d+)\.weight", r"params/mapping/\1/weight", _dense),
    (r"mapping\.(embed|fc\d+)\.bias", r"params/mapping/\1/bias", _same),
    (r"(.+\.)?resample_filter", None, _same),
]


def apply_table(state: Mapping[str, np.ndarray], table, what: str, resample_filter) -> dict[str, np.ndarray]:
    """Map every entry of `state` through `table`; return {'params/a/b': array}. Raises on unmatched names."""
    out: dict[str, np.ndarray] = {}
    unmatched = []
    f2d = np.outer(resample_filter, resample_filter)
    f2d = f2d / f2d.sum()
    for name, value in state.items():
        for pattern, target, fn in table:
            m = re.fullmatch(pattern, name)
            if m:
                break
        else:
            unmatched.append(name)
            continue
        value = np.asarray(value)
        if target is None:
            if value.shape != f2d.shape or not np.allclose(value, f2d, rtol=0, atol=1e-7):
                raise InputError(f"{what}: {name} is not the {list(resample_filter)} filter the config names")
            continue
        out[m.expand(target)] = np.array(fn(value.astype(np.float32)), order="C")  # (keeps 0-d arrays 0-d)
    if unmatched:
        raise InputError(f"{what}: {len(unmatched)} tensors match no conversion rule: {', '.join(unmatched)}")
    return out


def _fill(module, init_args, converted: Mapping[str, np.ndarray], what: str) -> dict:
    """Check converted arrays against the module's variables (names and shapes) and nest them.
    init_args are shapes (jax.ShapeDtypeStruct): nothing the config asks for is allocated."""
    shapes = jax.eval_shape(lambda *args: module.init({"params": jax.random.key(0)}, *args), *init_args)
    expected = {k.replace(".", "/"): v for k, v in checkpoint.flatten(shapes).items()}
    checkpoint.check_tree({k.replace("/", "."): v for k, v in expected.items()},
                          {k.replace("/", "."): v for k, v in converted.items()}, what)
    return checkpoint.unflatten({k.replace("/", "."): v for k, v in converted.items()})


def _shape(*shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _generator_init_args(cfg: GeneratorConfig):
    c = _shape(1, cfg.c_dim) if cfg.c_dim else None
    return _shape(1, cfg.z_dim), c, {k: _shape(*s) for k, s in cfg.noise_shapes.items()}


def _discriminator_init_args(cfg: DiscriminatorConfig):
    return _shape(1, cfg.img_resolution, cfg.img_resolution, cfg.img_channels), (_shape(1, cfg.c_dim) if cfg.c_dim
                                                                                 else None)


def generator_tree(cfg: GeneratorConfig, state: Mapping[str, np.ndarray], what: str = "generator") -> dict:
    """NVIDIA-named G state dict -> {'params': ..., 'buffers': ...} for `GeneratorModule(cfg)`."""
    flat = apply_table(state, _GENERATOR_TABLE, what, cfg.resample_filter)
    return _fill(GeneratorModule(cfg), _generator_init_args(cfg), flat, what)


def discriminator_tree(cfg: DiscriminatorConfig, state: Mapping[str, np.ndarray],
                       what: str = "discriminator") -> dict:
    flat = apply_table(state, _DISCRIMINATOR_TABLE, what, cfg.resample_filter)
    return _fill(DiscriminatorModule(cfg), _discriminator_init_args(cfg), flat, what)


# ---------------------------------------------------------------------------------------------
# rosinality -> NVIDIA names.

def _check_indices(state: Mapping[str, np.ndarray], what: str) -> None:
    """rosinality layer indices become powers of two (resolutions): 'convs.99999999999' is refused."""
    for name in state:
        if any(len(d) > 3 for d in re.findall(r"\d+", name)):
            raise InputError(f"{what}: tensor {name[:80]!r}: layer index out of range")


def _rosinality_generator_names(state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """Rename a rosinality `g_ema` state dict to NVIDIA's names; returns (state, inferred kwargs)."""
    _check_indices(state, "rosinality generator")
    out: dict[str, np.ndarray] = {}
    unmatched = []
    n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
    convs = sorted({int(m.group(1)) for k in state if (m := re.match(r"convs\.(\d+)\.", k))})
    num_up = len(convs) // 2
    size = 2 ** (num_up + 2)
    kernel = None
    for name, v in state.items():
        v = np.asarray(v)
        if m := re.fullmatch(r"style\.(\d+)\.(weight|bias)", name):
            out[f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}"] = v
        elif name == "input.input":
            out["synthesis.b4.const"] = v[0]
        elif m := re.fullmatch(r"noises\.noise_(\d+)", name):
            j = int(m.group(1))
            layer = "b4.conv1" if j == 0 else f"b{2 ** ((j + 1) // 2 + 2)}.conv{(j + 1) % 2}"
            out[f"synthesis.{layer}.noise_const"] = v[0, 0]
        elif m := re.fullmatch(r"(conv1|to_rgb1|convs\.(\d+)|to_rgbs\.(\d+))\.(.+)", name):
            if m.group(1) == "conv1":
                layer = "b4.conv1"
            elif m.group(1) == "to_rgb1":
                layer = "b4.torgb"
            elif m.group(2) is not None:
                i = int(m.group(2))
                layer = f"b{2 ** (i // 2 + 3)}.conv{i % 2}"
            else:
                layer = f"b{2 ** (int(m.group(3)) + 3)}.torgb"
            rest = m.group(4)
            if rest in ("conv.blur.kernel", "upsample.kernel"):
                kernel = v if kernel is None else kernel
                if not np.allclose(v, kernel):
                    raise InputError(f"rosinality checkpoint: {name} differs from the other blur kernels")
                continue
            target = {"conv.weight": ("weight", lambda a: a[0]),
                      "conv.modulation.weight": ("affine.weight", _same),
                      "conv.modulation.bias": ("affine.bias", _same),
                      "noise.weight": ("noise_strength", _scalar),
                      "activate.bias": ("bias", _same),
                      "bias": ("bias", lambda a: a.reshape(-1))}.get(rest)
            if target is None:
                unmatched.append(name)
                continue
            out[f"synthesis.{layer}.{target[0]}"] = target[1](v)
        else:
            unmatched.append(name)
    if unmatched:
        raise InputError(f"rosinality generator: {len(unmatched)} tensors match no rule: {', '.join(unmatched)}")
    taps = (1.0, 3.0, 3.0, 1.0)
    if kernel is not None:
        f = np.outer(taps, taps)
        if not np.allclose(kernel / kernel.sum(), f / f.sum(), atol=1e-7):
            raise InputError("rosinality generator: blur kernel is not the [1,3,3,1] filter")
    style_dim = out["mapping.fc0.weight"].shape[1]
    channels = [out["synthesis.b4.const"].shape[0]] + [
        out[f"synthesis.b{2 ** (k + 3)}.conv0.weight"].shape[0] for k in range(num_up)]
    kwargs = dict(z_dim=style_dim, c_dim=0, w_dim=out[f"mapping.fc{n_mlp - 1}.weight"].shape[0],
                  img_resolution=size, img_channels=out["synthesis.b4.torgb.weight"].shape[0],
                  channels=tuple(int(c) for c in channels), mapping_layers=n_mlp, architecture="skip",
                  conv_clamp=None)
    for res in (2 ** (k + 2) for k in range(num_up + 1)):  # NVIDIA's filter buffers (constants)
        f = np.outer(taps, taps) / 64.0
        out[f"synthesis.b{res}.resample_filter"] = f
    return out, kwargs


def _rosinality_discriminator_names(state: Mapping[str, np.ndarray], size: int) -> tuple[dict, dict]:
    _check_indices(state, "rosinality discriminator")
    out: dict[str, np.ndarray] = {}
    unmatched = []
    for name, v in state.items():
        v = np.asarray(v)
        if m := re.fullmatch(r"convs\.0\.0\.weight", name):
            out[f"b{size}.fromrgb.weight"] = v
        elif re.fullmatch(r"convs\.0\.1\.bias", name):
            out[f"b{size}.fromrgb.bias"] = v
        elif m := re.fullmatch(r"convs\.(\d+)\.(conv1\.0\.weight|conv1\.1\.bias|conv2\.1\.weight|conv2\.2\.bias|"
                               r"skip\.1\.weight|conv2\.0\.kernel|skip\.0\.kernel)", name):
            res = size // 2 ** (int(m.group(1)) - 1)
            key = {"conv1.0.weight": "conv0.weight", "conv1.1.bias": "conv0.bias", "conv2.1.weight": "conv1.weight",
                   "conv2.2.bias": "conv1.bias", "skip.1.weight": "skip.weight"}.get(m.group(2))
            if key is None:  # blur kernels: constant f, checked against [1,3,3,1]
                f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
                if not np.allclose(v / v.sum(), f, atol=1e-7):
                    raise InputError(f"rosinality discriminator: {name} is not the [1,3,3,1] filter")
                continue
            out[f"b{res}.{key}"] = v
        elif m := re.fullmatch(r"final_conv\.(0\.weight|1\.bias)", name):
            out["b4.conv." + ("weight" if m.group(1) == "0.weight" else "bias")] = v
        elif m := re.fullmatch(r"final_linear\.([01])\.(weight|bias)", name):
            out[f"b4.{'fc' if m.group(1) == '0' else 'out'}.{m.group(2)}"] = v
        else:
            unmatched.append(name)
    if unmatched:
        raise InputError(f"rosinality discriminator: {len(unmatched)} tensors match no rule: {', '.join(unmatched)}")
    log2 = int(math.log2(size))
    channels = {4: out["b4.conv.weight"].shape[0]}
    for res in (2 ** i for i in range(3, log2 + 1)):
        channels[res] = out[f"b{res}.conv0.weight"].shape[0]
    cfg = dict(c_dim=0, img_resolution=size, img_channels=out[f"b{size}.fromrgb.weight"].shape[1],
               channels=tuple(int(channels[2 ** i]) for i in range(2, log2 + 1)), architecture="resnet",
               conv_clamp=None, mbstd_group_size=4, mbstd_num_channels=out["b4.conv.weight"].shape[1] - channels[4])
    return out, cfg


# ---------------------------------------------------------------------------------------------
# NVIDIA state dicts without constructor kwargs: infer the architecture from the shapes.

def infer_generator_kwargs(state: Mapping[str, np.ndarray]) -> dict:
    """GeneratorConfig fields read off an NVIDIA-named state dict (conv_clamp cannot be inferred)."""
    fcs = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    if not fcs or "synthesis.b4.const" not in state:
        raise InputError("not an NVIDIA StyleGAN2 generator state dict (no mapping.fc0 / synthesis.b4.const)")
    res = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    embed = state.get("mapping.embed.weight")
    c_dim = 0 if embed is None else embed.shape[1]
    embed_features = 0 if embed is None else embed.shape[0]
    top = res[-1]
    channels = tuple(int(state[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in res)
    if f"synthesis.b{top}.skip.weight" in state:
        arch = "resnet"
    elif "synthesis.b4.torgb.weight" in state and top > 4:
        arch = "skip"
    else:
        arch = "orig" if top > 4 else "skip"
    w_dim = int(state[f"mapping.fc{fcs[-1]}.weight"].shape[0])
    return dict(z_dim=int(state["mapping.fc0.weight"].shape[1]) - embed_features, c_dim=int(c_dim), w_dim=w_dim,
                img_resolution=top, img_channels=int(state[f"synthesis.b{top}.torgb.weight"].shape[0]),
                channels=channels, mapping_layers=len(fcs),
                embed_features=(embed_features or None) if embed_features != w_dim else None,
                layer_features=(int(state["mapping.fc0.weight"].shape[0]) if len(fcs) > 1 and
                                state["mapping.fc0.weight"].shape[0] != w_dim else None),
                architecture=arch, conv_clamp=None)


# ---------------------------------------------------------------------------------------------
# Entry point.

def _load_init_kwargs(path: str) -> dict:
    """--init-kwargs: a JSON object of NVIDIA's Generator kwargs, or one holding them as "init_kwargs"."""
    try:
        data = checkpoint.load_json(path)
    except (OSError, ValueError) as e:
        raise InputError(f"--init-kwargs {path}: not readable JSON ({str(e).splitlines()[0][:200]})") from None
    if isinstance(data, dict) and "init_kwargs" in data:
        data = data["init_kwargs"]
    if not isinstance(data, dict):
        raise InputError(f"--init-kwargs {path}: expected a JSON object of Generator constructor kwargs "
                         f"(z_dim, w_dim, ...), got a {type(data).__name__}")
    return data


# NVIDIA constructor kwargs (top level or in mapping_/synthesis_/block_/epilogue_kwargs) and their types.
_INT_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
               "num_fp16_res", "num_layers", "kernel_size", "mbstd_num_channels"}
_OPTIONAL_INT_KWARGS = {"embed_features", "layer_features", "cmap_dim", "mbstd_group_size"}
_OPTIONAL_FLOAT_KWARGS = {"conv_clamp", "lr_multiplier", "w_avg_beta"}
_BOOL_KWARGS = {"use_noise"}
_NESTED_KWARGS = ("mapping_kwargs", "synthesis_kwargs", "block_kwargs", "epilogue_kwargs")


def _check_kwarg_types(kwargs: Mapping, what: str, where: str = "") -> None:
    """The numeric kwargs must be numbers of the right kind (no '512', no 3.7 for a count, no NaN)."""
    for key, value in kwargs.items():
        name = f"{where}{key}"
        if key in _NESTED_KWARGS:
            if value is not None and not isinstance(value, Mapping):
                raise InputError(f"{what}: {name} must be a dict, got {type(value).__name__}")
            _check_kwarg_types(value or {}, what, f"{name}.")
        elif key in _INT_KWARGS or (key in _OPTIONAL_INT_KWARGS and value is not None):
            if type(value) is not int or not 0 <= value < 2 ** 31:
                raise InputError(f"{what}: {name} must be a non-negative integer, got {_brief(value)}")
        elif key in _OPTIONAL_FLOAT_KWARGS and value is not None:
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise InputError(f"{what}: {name} must be a non-negative number, got {_brief(value)}")
        elif key in _BOOL_KWARGS and type(value) is not bool:
            raise InputError(f"{what}: {name} must be true or false, got {_brief(value)}")


def _nvidia_config(cls, kwargs, what: str):
    """GeneratorConfig / DiscriminatorConfig from NVIDIA constructor kwargs; bad values -> one line."""
    if not isinstance(kwargs, Mapping):
        raise InputError(f"{what}: constructor kwargs are a {type(kwargs).__name__}, not a dict")
    _check_kwarg_types(kwargs, what)
    try:
        cfg = cls.from_nvidia_kwargs(kwargs)
    except InputError as e:
        raise InputError(f"{what}: {e}") from None
    except (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError) as e:
        detail = f"missing {e.args[0]!r:.60}" if isinstance(e, KeyError) else f"{type(e).__name__}: {str(e)[:200]}"
        raise InputError(f"{what}: bad constructor kwargs ({detail})") from None
    # the checks a model.json gets (types, positive sizes, resolution), in the one place they live
    return cls.from_dict(json.loads(json.dumps(cfg.to_dict())), what)


def _tensor_dict(obj, what: str) -> dict[str, np.ndarray]:
    """A non-empty {str: array} (a rosinality g_ema / d entry), or a one-line error."""
    if not isinstance(obj, Mapping) or not obj:
        kind = "an empty dict" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        raise InputError(f"{what} is {kind}, not a state dict of tensors")
    bad = [str(k)[:60] for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise InputError(f"{what}: entries that are not tensors: {', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''}")
    return dict(obj)


def _shapes_error(what: str, e: Exception) -> InputError:
    """A tensor an inference step needs is missing or has an unexpected shape."""
    if isinstance(e, KeyError):
        return InputError(f"{what}: cannot read the architecture: tensor {e.args[0]!r:.80} is missing")
    return InputError(f"{what}: cannot read the architecture from the tensor shapes ({type(e).__name__}: "
                      f"{str(e)[:200]})")


def _check_class(obj, allowed: tuple[str, ...], what: str):
    name = obj.class_name
    if not any(name.endswith(a) for a in allowed):
        hint = " (StyleGAN3 networks are not StyleGAN2)" if "stylegan3" in name else ""
        raise InputError(f"{what} is a {name!r}, expected one of {allowed}{hint}")


def read_stylegan2(src: str, *, init_kwargs: str | None = None, conv_clamp: float | None = None,
                   w_avg_samples: int = 10000) -> tuple[dict, dict, dict]:
    """Read any supported StyleGAN2 source -> (config dict, trees {'G': ..., 'D'?: ...}, source info)."""
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file")
    kwargs = _load_init_kwargs(init_kwargs) if init_kwargs is not None else None
    fmt = pickle_reader.sniff_format(src)
    info = {"path": os.path.abspath(src), "format": fmt}
    d_cfg = d_state = None
    if kwargs is not None and fmt == "nvidia-pkl":
        raise InputError(f"--init-kwargs is for bare state dicts: {src} is an NVIDIA network pickle, which carries "
                         "its own constructor kwargs")
    if fmt == "nvidia-pkl":
        data = pickle_reader.load_network_pickle(src)
        g = data.get("G_ema") or data.get("G")
        if not isinstance(g, pickle_reader.PersistentModule):
            keys = ", ".join(sorted(str(k)[:40] for k in data)[:8])
            raise InputError(f"{src}: the pickle holds no 'G_ema' or 'G' network (keys: {keys})")
        _check_class(g, ("networks.Generator", "networks_stylegan2.Generator"), f"{src}: G_ema")
        g_cfg = _nvidia_config(GeneratorConfig, g.init_kwargs, f"{src}: G_ema")
        g_state = g.state_dict
        info.update(network="G_ema" if data.get("G_ema") is not None else "G", class_name=g.class_name,
                    init_kwargs=g.init_kwargs)
        d = data.get("D")
        if isinstance(d, pickle_reader.PersistentModule):
            _check_class(d, ("networks.Discriminator", "networks_stylegan2.Discriminator"), f"{src}: D")
            d_cfg, d_state = _nvidia_config(DiscriminatorConfig, d.init_kwargs, f"{src}: D"), d.state_dict
    else:
        if fmt in ("torch-zip", "torch-legacy", "pickle"):
            obj = pickle_reader.load_torch(src)
        else:
            obj = pickle_reader.load_state_dict(src)
        if isinstance(obj, Mapping) and "g_ema" in obj:  # rosinality
            if kwargs is not None:
                raise InputError(f"--init-kwargs is for NVIDIA-named state dicts: {src} is a rosinality checkpoint, "
                                 "whose architecture is read from its tensor shapes")
            g_raw = _tensor_dict(obj["g_ema"], f"{src}: g_ema")
            try:
                g_state, kw = _rosinality_generator_names(g_raw)
            except InputError as e:
                raise InputError(f"{src}: {e}") from None
            except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as e:
                raise _shapes_error(f"{src}: g_ema", e) from None
            if conv_clamp is not None:
                kw["conv_clamp"] = conv_clamp
            g_cfg = GeneratorConfig(**kw)
            info.update(network="g_ema", layout="rosinality")
            latent_avg = obj.get("latent_avg")
            if latent_avg is not None:
                if not isinstance(latent_avg, np.ndarray) or latent_avg.size != g_cfg.w_dim:
                    raise InputError(f"{src}: latent_avg is not a tensor of {g_cfg.w_dim} values (w_dim)")
                g_state["mapping.w_avg"] = np.asarray(latent_avg, np.float32).reshape(-1)
                info["w_avg"] = "latent_avg of the checkpoint"
            if isinstance(obj.get("d"), Mapping) and obj["d"]:
                d_raw = _tensor_dict(obj["d"], f"{src}: d")
                try:
                    d_state, dkw = _rosinality_discriminator_names(d_raw, g_cfg.img_resolution)
                except InputError as e:
                    raise InputError(f"{src}: {e}") from None
                except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as e:
                    raise _shapes_error(f"{src}: d", e) from None
                d_cfg = DiscriminatorConfig(**dkw)
        elif isinstance(obj, Mapping) and any(str(k).startswith("synthesis.") for k in obj):
            g_state = _tensor_dict(obj, f"{src}")
            if kwargs is not None:
                g_cfg = _nvidia_config(GeneratorConfig, kwargs, f"--init-kwargs {init_kwargs}")
            else:
                try:
                    kw = infer_generator_kwargs(g_state)
                except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as e:
                    if isinstance(e, InputError):
                        raise
                    raise _shapes_error(f"{src}", e) from None
                if conv_clamp is not None:
                    kw["conv_clamp"] = conv_clamp
                g_cfg = GeneratorConfig(**kw)
                info["inferred_architecture"] = True
            info.update(network="state_dict", layout="nvidia")
        else:
            keys = ", ".join(sorted(str(k)[:40] for k in obj)[:8]) if isinstance(obj, Mapping) else type(obj).__name__
            raise InputError(f"{src}: not a StyleGAN2 checkpoint this converter knows (found {keys})")
    has_w_avg = "mapping.w_avg" in g_state
    if not has_w_avg:  # filled in below, once the mapping network is converted
        g_state = {**g_state, "mapping.w_avg": np.zeros((g_cfg.w_dim,), np.float32)}
    g_tree = generator_tree(g_cfg, g_state, f"{src}: generator")
    if not has_w_avg:
        g_tree["buffers"]["w_avg"] = estimate_w_avg(g_cfg, g_tree, w_avg_samples)
        info["w_avg"] = f"mean of {w_avg_samples} mapped z (seed 0): the checkpoint stores none"
    trees = {"G": g_tree}
    config = {"G": g_cfg.to_dict()}
    if d_state is not None:
        trees["D"] = discriminator_tree(d_cfg, d_state, f"{src}: discriminator")
        config["D"] = d_cfg.to_dict()
    return config, trees, info


def estimate_w_avg(cfg: GeneratorConfig, tree: dict, n: int) -> np.ndarray:
    """Mean of mapping(z) over n standard-normal z (what rosinality's `mean_latent` computes)."""
    z = jax.random.normal(jax.random.key(0), (n, cfg.z_dim))
    c = None
    if cfg.c_dim:
        c = jax.nn.one_hot(jax.random.randint(jax.random.key(1), (n,), 0, cfg.c_dim), cfg.c_dim)
    w = MappingNetwork(cfg.mapping).apply({"params": tree["params"]["mapping"]}, z, c)
    return np.asarray(jnp.mean(w, axis=0), np.float32)


def convert_stylegan2(src: str, dest: str, *, overwrite: bool = False, init_kwargs: str | None = None,
                      conv_clamp: float | None = None, discriminator: bool = True) -> str:
    """Convert a StyleGAN2 checkpoint into a model folder at `dest` (written atomically).

    `dest` is checked before anything is read: an existing one is replaced (with `overwrite`)
    only if it is a model folder we wrote that does not hold the source (`checkpoint.check_destination`).
    """
    keep = [src] + ([init_kwargs] if init_kwargs else [])
    checkpoint.check_destination(dest, overwrite=overwrite, keep=keep)
    if conv_clamp is not None and not (math.isfinite(conv_clamp) and conv_clamp > 0):
        raise InputError(f"--conv-clamp must be a positive number, got {conv_clamp}")
    config, trees, info = read_stylegan2(src, init_kwargs=init_kwargs, conv_clamp=conv_clamp)
    if not discriminator:
        trees.pop("D", None)
        config.pop("D", None)
    return checkpoint.write_model_folder(dest, kind=KIND, config=config, trees=trees, source=_jsonable(info),
                                         overwrite=overwrite, keep=keep)


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return repr(x)


__all__ = ["convert_stylegan2", "read_stylegan2", "generator_tree", "discriminator_tree", "infer_generator_kwargs"]
