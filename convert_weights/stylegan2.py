"""StyleGAN2 checkpoints -> jax-inpaint model folders.

Sources: NVIDIA training pickles (stylegan2-ada-pytorch, or stylegan3's StyleGAN2 networks), read
without running their embedded code; rosinality `.pt` files (train.py or convert_weight.py layout);
NVIDIA-named state dicts (.npz, .safetensors, torch files) with their constructor kwargs as JSON.

Conversion is one name table per layout (NVIDIA G and D, rosinality G and D), from our Flax
parameter names to the source's, applied by `convert_weights.names` (the engine every converter
uses): every parameter of the architecture must be filled and every source tensor used (the
constant resampling filters are checked, not stored), or the conversion fails with one error that
lists the gaps by their source names.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from convert_weights import names, pickle_reader
from convert_weights.names import CHW, CONV, DENSE, RESHAPE, SAME, NameTable, squeeze_leading
from jax_inpaint.models import folders as checkpoint
from jax_inpaint.errors import brief
from jax_inpaint.errors import InputError
from jax_inpaint.models.stylegan2 import (DiscriminatorConfig, DiscriminatorModule, GeneratorConfig, GeneratorModule,
                                   MappingNetwork, discriminator_inputs, generator_inputs)
from jax_inpaint.models.variables import variable_shapes

KIND = "stylegan2"
W_AVG = "buffers.w_avg"  # may be absent from a source: then latent_avg or an estimate fills it

# ---------------------------------------------------------------------------------------------
# Name tables (ours -> source). Our names: 'params.<path>' or 'buffers.<path>' of the Flax variables.

_NVIDIA_G_RULES = [
    (r"buffers\.w_avg", "mapping.w_avg", SAME),
    (r"params\.mapping\.(embed|fc\d+)\.weight", r"mapping.\1.weight", DENSE),
    (r"params\.mapping\.(embed|fc\d+)\.bias", r"mapping.\1.bias", SAME),
    (r"params\.synthesis\.(b\d+)\.const", r"synthesis.\1.const", CHW),
    (r"params\.synthesis\.(b\d+)\.(conv[01]|torgb)\.affine\.weight", r"synthesis.\1.\2.affine.weight", DENSE),
    (r"params\.synthesis\.(b\d+)\.(conv[01]|torgb)\.affine\.bias", r"synthesis.\1.\2.affine.bias", SAME),
    (r"params\.synthesis\.(b\d+)\.(conv[01]|torgb|skip)\.weight", r"synthesis.\1.\2.weight", CONV),
    (r"params\.synthesis\.(b\d+)\.(conv[01]|torgb)\.bias", r"synthesis.\1.\2.bias", SAME),
    (r"params\.synthesis\.(b\d+)\.(conv[01])\.noise_strength", r"synthesis.\1.\2.noise_strength", RESHAPE),
    (r"buffers\.synthesis\.(b\d+)\.(conv[01])\.noise_const", r"synthesis.\1.\2.noise_const", SAME),
]

_NVIDIA_D_RULES = [
    (r"params\.(b\d+)\.(fromrgb|conv0|conv1|skip|conv)\.weight", r"\1.\2.weight", CONV),
    (r"params\.(b\d+)\.(fromrgb|conv0|conv1|conv)\.bias", r"\1.\2.bias", SAME),
    (r"params\.b4\.(fc|out)\.weight", r"b4.\1.weight", DENSE),
    (r"params\.b4\.(fc|out)\.bias", r"b4.\1.bias", SAME),
    (r"params\.mapping\.(embed|fc\d+)\.weight", r"mapping.\1.weight", DENSE),
    (r"params\.mapping\.(embed|fc\d+)\.bias", r"mapping.\1.bias", SAME),
]


def nvidia_generator_table(cfg: GeneratorConfig) -> NameTable:
    # the constant resampling filters: checked against the config's, not stored
    return NameTable.of(_NVIDIA_G_RULES, ignore={r"synthesis\.(.+\.)?resample_filter":
                                                 names.filter_buffer(cfg.resample_filter)})


def nvidia_discriminator_table(cfg: DiscriminatorConfig) -> NameTable:
    return NameTable.of(_NVIDIA_D_RULES, ignore={r"(.+\.)?resample_filter": names.filter_buffer(cfg.resample_filter)})


# rosinality/stylegan2-pytorch: modules are numbered (convs.i, to_rgbs.i, noises.noise_j, style.i), so
# the source names are computed from our resolutions. Its blur kernels (any scale) are checked, not stored.
_ROSINALITY_BLUR = names.filter_buffer((1.0, 3.0, 3.0, 1.0), normalise=True, rtol=1e-5)


def _log2(res: str) -> int:
    return int(res).bit_length() - 1


def _rosinality_layer(res: str, layer: str) -> str:
    """Our synthesis layer b{res}.{layer} -> rosinality's module (b4: conv1, to_rgb1; then convs.i, to_rgbs.i)."""
    if int(res) == 4:
        return {"conv1": "conv1", "torgb": "to_rgb1"}.get(layer, f"b4.{layer}")
    k = _log2(res) - 3
    return f"to_rgbs.{k}" if layer == "torgb" else f"convs.{2 * k + int(layer[-1])}"


def _rosinality_noise(m: re.Match) -> str:
    res, conv = m[1], int(m[2])
    return "noises.noise_0" if int(res) == 4 else f"noises.noise_{2 * (_log2(res) - 2) + conv - 1}"


def _in_layer(suffix: str):
    return lambda m: f"{_rosinality_layer(m[1], m[2])}.{suffix}"


_SYNTHESIS = r"params\.synthesis\.b(\d+)\.(conv[01]|torgb)"
ROSINALITY_G_TABLE = NameTable.of([
    (r"params\.mapping\.fc(\d+)\.weight", lambda m: f"style.{int(m[1]) + 1}.weight", DENSE),  # style.0: PixelNorm
    (r"params\.mapping\.fc(\d+)\.bias", lambda m: f"style.{int(m[1]) + 1}.bias", SAME),
    (r"params\.synthesis\.b4\.const", "input.input", squeeze_leading(1).then(CHW)),
    (r"buffers\.synthesis\.b(\d+)\.conv([01])\.noise_const", _rosinality_noise, squeeze_leading(2)),
    (rf"{_SYNTHESIS}\.weight", _in_layer("conv.weight"), squeeze_leading(1).then(CONV)),
    (rf"{_SYNTHESIS}\.affine\.weight", _in_layer("conv.modulation.weight"), DENSE),
    (rf"{_SYNTHESIS}\.affine\.bias", _in_layer("conv.modulation.bias"), SAME),
    (rf"{_SYNTHESIS}\.noise_strength", _in_layer("noise.weight"), RESHAPE),
    (r"params\.synthesis\.b(\d+)\.(conv[01])\.bias", _in_layer("activate.bias"), SAME),
    (r"params\.synthesis\.b(\d+)\.(torgb)\.bias", _in_layer("bias"), RESHAPE),  # [1, C, 1, 1]
], ignore={r"(conv1|to_rgb1|convs\.\d+|to_rgbs\.\d+)\.(conv\.blur|upsample)\.kernel": _ROSINALITY_BLUR})


def rosinality_discriminator_table(size: int) -> NameTable:
    """rosinality's D: convs.0 is fromrgb at `size`, convs.i (i >= 1) the block at size / 2^(i-1)."""
    def block(suffix: str):
        return lambda m: f"convs.{_log2(str(size)) - _log2(m[1]) + 1}.{suffix}"

    return NameTable.of([
        (r"params\.b(\d+)\.fromrgb\.weight", "convs.0.0.weight", CONV),
        (r"params\.b(\d+)\.fromrgb\.bias", "convs.0.1.bias", SAME),
        (r"params\.b(\d+)\.conv0\.weight", block("conv1.0.weight"), CONV),
        (r"params\.b(\d+)\.conv0\.bias", block("conv1.1.bias"), SAME),
        (r"params\.b(\d+)\.conv1\.weight", block("conv2.1.weight"), CONV),
        (r"params\.b(\d+)\.conv1\.bias", block("conv2.2.bias"), SAME),
        (r"params\.b(\d+)\.skip\.weight", block("skip.1.weight"), CONV),
        (r"params\.b4\.conv\.weight", "final_conv.0.weight", CONV),
        (r"params\.b4\.conv\.bias", "final_conv.1.bias", SAME),
        (r"params\.b4\.fc\.weight", "final_linear.0.weight", DENSE),
        (r"params\.b4\.fc\.bias", "final_linear.0.bias", SAME),
        (r"params\.b4\.out\.weight", "final_linear.1.weight", DENSE),
        (r"params\.b4\.out\.bias", "final_linear.1.bias", SAME),
    ], ignore={r"convs\.\d+\.(conv2|skip)\.0\.kernel": _ROSINALITY_BLUR})


# ---------------------------------------------------------------------------------------------
# Trees.

def _tree(module, init_args, state: Mapping[str, np.ndarray], table: NameTable, what: str, optional=()) -> dict:
    """The module's variables (names and shapes; init_args are jax.ShapeDtypeStructs, so nothing the
    config asks for is allocated) filled from `state` through `table`, nested."""
    shapes = variable_shapes(module, init_args)
    flat = names.convert(state, names.expected_shapes(shapes), table, what, optional=optional)
    return checkpoint.unflatten(flat)


def generator_tree(cfg: GeneratorConfig, state: Mapping[str, np.ndarray], what: str = "generator",
                   table: NameTable | None = None) -> dict:
    """G state dict (NVIDIA names, or those of `table`) -> {'params': ..., 'buffers': ...} for
    `GeneratorModule(cfg)`; buffers.w_avg only when the state holds it."""
    return _tree(GeneratorModule(cfg), generator_inputs(cfg), state, table or nvidia_generator_table(cfg), what,
                 optional=(W_AVG,))


def discriminator_tree(cfg: DiscriminatorConfig, state: Mapping[str, np.ndarray], what: str = "discriminator",
                       table: NameTable | None = None) -> dict:
    return _tree(DiscriminatorModule(cfg), discriminator_inputs(cfg), state,
                 table or nvidia_discriminator_table(cfg), what)


# ---------------------------------------------------------------------------------------------
# rosinality checkpoints: the architecture from the tensor shapes.

def _check_indices(state: Mapping[str, np.ndarray], what: str) -> None:
    """rosinality layer indices become powers of two (resolutions): 'convs.99999999999' is refused."""
    for name in state:
        if any(len(d) > 3 for d in re.findall(r"\d+", name)):
            raise InputError(f"{what}: tensor {name[:80]!r}: layer index out of range")


def infer_rosinality_generator_kwargs(state: Mapping[str, np.ndarray]) -> dict:
    """GeneratorConfig fields of a rosinality `g_ema` (KeyError / IndexError when a tensor is missing)."""
    _check_indices(state, "rosinality generator")
    n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
    num_up = len({int(m.group(1)) for k in state if (m := re.match(r"convs\.(\d+)\.", k))}) // 2
    channels = [state["input.input"].shape[1]] + [state[f"convs.{2 * k}.conv.weight"].shape[1] for k in range(num_up)]
    return dict(z_dim=state["style.1.weight"].shape[1], c_dim=0, w_dim=state[f"style.{n_mlp}.weight"].shape[0],
                img_resolution=2 ** (num_up + 2), img_channels=state["to_rgb1.conv.weight"].shape[1],
                channels=tuple(int(c) for c in channels), mapping_layers=n_mlp, architecture="skip", conv_clamp=None)


def infer_rosinality_discriminator_kwargs(state: Mapping[str, np.ndarray], size: int) -> dict:
    """DiscriminatorConfig fields of a rosinality `d` for images of `size`."""
    _check_indices(state, "rosinality discriminator")
    log2 = int(math.log2(size))
    channels = {4: state["final_conv.0.weight"].shape[0]}
    for i in range(3, log2 + 1):
        channels[2 ** i] = state[f"convs.{log2 - i + 1}.conv1.0.weight"].shape[0]
    return dict(c_dim=0, img_resolution=size, img_channels=state["convs.0.0.weight"].shape[1],
                channels=tuple(int(channels[2 ** i]) for i in range(2, log2 + 1)), architecture="resnet",
                conv_clamp=None, mbstd_group_size=4,
                mbstd_num_channels=state["final_conv.0.weight"].shape[1] - channels[4])


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
                raise InputError(f"{what}: {name} must be a non-negative integer, got {brief(value)}")
        elif key in _OPTIONAL_FLOAT_KWARGS and value is not None:
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise InputError(f"{what}: {name} must be a non-negative number, got {brief(value)}")
        elif key in _BOOL_KWARGS and type(value) is not bool:
            raise InputError(f"{what}: {name} must be true or false, got {brief(value)}")


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


def _inferred_config(cls, kw: Mapping, what: str):
    """GeneratorConfig / DiscriminatorConfig from fields read off tensor shapes (and --conv-clamp): the checks a
    model.json gets (`from_dict`: types, positive sizes, ranges), so nonsense sizes are one line, not a trace."""
    try:
        data = json.loads(json.dumps(dict(kw)))
    except (TypeError, ValueError) as e:
        raise InputError(f"{what}: cannot read the architecture ({type(e).__name__}: {str(e)[:200]})") from None
    return cls.from_dict(data, what)


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
    d_cfg = d_state = latent_avg = None
    g_table = d_table = None  # the NVIDIA tables, unless the source is rosinality's
    g_what, d_what = f"{src}: generator", f"{src}: discriminator"
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
            g_state = _tensor_dict(obj["g_ema"], f"{src}: g_ema")
            try:
                kw = infer_rosinality_generator_kwargs(g_state)
            except InputError as e:
                raise InputError(f"{src}: {e}") from None
            except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as e:
                raise _shapes_error(f"{src}: g_ema", e) from None
            if conv_clamp is not None:
                kw["conv_clamp"] = conv_clamp
            g_cfg = _inferred_config(GeneratorConfig, kw, f"{src}: g_ema")
            g_table, g_what = ROSINALITY_G_TABLE, f"{src}: g_ema"
            info.update(network="g_ema", layout="rosinality")
            latent_avg = obj.get("latent_avg")
            if latent_avg is not None:
                if not isinstance(latent_avg, np.ndarray) or latent_avg.size != g_cfg.w_dim:
                    raise InputError(f"{src}: latent_avg is not a tensor of {g_cfg.w_dim} values (w_dim)")
                latent_avg = np.asarray(latent_avg, np.float32).reshape(-1)
                info["w_avg"] = "latent_avg of the checkpoint"
            if isinstance(obj.get("d"), Mapping) and obj["d"]:
                d_state = _tensor_dict(obj["d"], f"{src}: d")
                try:
                    dkw = infer_rosinality_discriminator_kwargs(d_state, g_cfg.img_resolution)
                except InputError as e:
                    raise InputError(f"{src}: {e}") from None
                except (KeyError, IndexError, ValueError, TypeError, ZeroDivisionError) as e:
                    raise _shapes_error(f"{src}: d", e) from None
                d_cfg = _inferred_config(DiscriminatorConfig, dkw, f"{src}: d")
                d_table, d_what = rosinality_discriminator_table(g_cfg.img_resolution), f"{src}: d"
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
                g_cfg = _inferred_config(GeneratorConfig, kw, f"{src}: generator (inferred from the tensor shapes)")
                info["inferred_architecture"] = True
            info.update(network="state_dict", layout="nvidia")
        else:
            keys = ", ".join(sorted(str(k)[:40] for k in obj)[:8]) if isinstance(obj, Mapping) else type(obj).__name__
            raise InputError(f"{src}: not a StyleGAN2 checkpoint this converter knows (found {keys})")
    g_tree = generator_tree(g_cfg, g_state, g_what, g_table)
    buffers = g_tree.setdefault("buffers", {})
    if "w_avg" not in buffers:  # not in the state dict: rosinality's latent_avg, or estimated
        if latent_avg is not None:
            buffers["w_avg"] = latent_avg
        else:
            buffers["w_avg"] = estimate_w_avg(g_cfg, g_tree, w_avg_samples)
            info["w_avg"] = f"mean of {w_avg_samples} mapped z (seed 0): the checkpoint stores none"
    trees = {"G": g_tree}
    config = {"G": g_cfg.to_dict()}
    if d_state is not None:
        trees["D"] = discriminator_tree(d_cfg, d_state, d_what, d_table)
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


__all__ = ["convert_stylegan2", "read_stylegan2", "generator_tree", "discriminator_tree", "infer_generator_kwargs",
           "infer_rosinality_generator_kwargs", "infer_rosinality_discriminator_kwargs", "nvidia_generator_table",
           "nvidia_discriminator_table", "ROSINALITY_G_TABLE", "rosinality_discriminator_table"]
