"""convert_weights.names: the one name-table engine every converter maps tensor names through.

The engine on its own (transforms, rules, gaps and extras), then every source format through it:
NVIDIA and rosinality StyleGAN2, Hugging Face and OpenAI CLIP, Hugging Face ViT report a missing,
an extra and a mis-shaped tensor in the same words, by the source's own names.
"""
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from convert_weights import names
from convert_weights.clip import convert_clip
from convert_weights.names import (CHW, CONV, DENSE, RESHAPE, SAME, NameTable, chunk, match_names, squeeze_leading)
from convert_weights.pickle_reader import load_torch
from convert_weights.stylegan2 import convert_stylegan2
from convert_weights.vit import convert_classifier
from jax_inpaint.errors import InputError

# ---------------------------------------------------------------------------------------------
# The engine.


@pytest.mark.parametrize("transform, shape", [
    (SAME, (3, 4)), (DENSE, (3, 4)), (CONV, (3, 3, 4, 5)), (CHW, (4, 4, 8)), (RESHAPE, ()),
    (squeeze_leading(2), (6,)), (chunk(1, 3, DENSE), (4, 2)), (squeeze_leading(1).then(CONV), (1, 1, 3, 2)),
    (squeeze_leading(1).then(CHW), (4, 4, 2)),
])
def test_each_transform_maps_its_source_shape_to_ours(transform, shape):
    src = np.arange(np.prod(transform.source_shape(shape)), dtype=np.float32).reshape(transform.source_shape(shape))
    assert transform.apply(src).shape == shape


def test_transforms_move_values_as_torch_layouts_need():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)  # OIHW
    assert CONV.apply(w)[1, 0, 2, 1] == w[1, 2, 1, 0]  # HWIO
    qkv = np.arange(12, dtype=np.float32).reshape(6, 2)  # fused [3D, D]
    np.testing.assert_array_equal(chunk(1, 3, DENSE).apply(qkv), qkv[2:4].T)
    const = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(squeeze_leading(1).then(CHW).apply(const), const[0].transpose(1, 2, 0))


TABLE = NameTable.of([
    (r"enc\.l(\d+)\.kernel", r"encoder.\1.weight", DENSE),
    (r"enc\.l(\d+)\.bias", (r"encoder.\1.bias", r"encoder.\1.b"), SAME),  # two spellings: first present wins
    (r"head\.scale", lambda m: "gain", RESHAPE),  # a computed name; any shape with one value
], ignore={r"buffer\.\d+": lambda name, value: None if value.sum() == 0 else "not zero"})
EXPECTED = {"enc.l0.kernel": (3, 2), "enc.l0.bias": (2,), "enc.l1.kernel": (2, 2), "enc.l1.bias": (2,),
            "head.scale": ()}


def _state(**over):
    state = {"encoder.0.weight": np.ones((2, 3)), "encoder.0.bias": np.zeros(2), "encoder.1.weight": np.ones((2, 2)),
             "encoder.1.b": np.ones(2, np.float16), "gain": np.full((1, 1), 2.0), "buffer.0": np.zeros(3)}
    state.update(over)
    return {k: v for k, v in state.items() if v is not None}


def test_a_complete_state_converts_to_float32():
    m = match_names(_state(), EXPECTED, TABLE)
    assert m.problems == []
    params = m.check("x")
    assert sorted(params) == sorted(EXPECTED)
    assert all(v.dtype == np.float32 and v.shape == EXPECTED[k] and v.flags.c_contiguous for k, v in params.items())
    assert params["head.scale"] == 2.0 and params["enc.l1.bias"].tolist() == [1.0, 1.0]


def test_every_gap_and_extra_is_reported_at_once_by_source_name():
    state = _state(**{"encoder.0.bias": None, "encoder.1.weight": np.ones((3, 2)), "extra.weight": np.ones(1),
                      "buffer.1": np.ones(2)})
    m = match_names(state, {**EXPECTED, "enc.norm.scale": (2,)}, TABLE)
    assert m.unruled == ["enc.norm.scale"]
    assert m.missing == ["encoder.0.bias (or encoder.0.b)"]
    assert m.wrong_shape == ["encoder.1.weight: shape (3, 2), expected (2, 2)"]
    assert m.unused == ["extra.weight"] and m.bad_extras == ["buffer.1: not zero"]
    with pytest.raises(InputError) as e:
        m.check("model.bin")
    assert str(e.value) == (
        "model.bin: the tensors do not match the architecture its config describes: "
        "parameters no rule fills (1): enc.norm.scale; missing tensors (1): encoder.0.bias (or encoder.0.b); "
        "wrong shape (1): encoder.1.weight: shape (3, 2), expected (2, 2); unexpected tensors (1): extra.weight; "
        "bad buffers (1): buffer.1: not zero")


def test_optional_parameters_may_be_left_unfilled():
    m = match_names(_state(gain=None), EXPECTED, TABLE, optional=["head.scale", "not.ruled"])
    assert m.problems == [] and "head.scale" not in m.params
    m = match_names(_state(), {**EXPECTED, "not.ruled": (1,)}, TABLE, optional=["not.ruled"])
    assert m.problems == [] and sorted(m.params) == sorted(EXPECTED)


def test_reshape_accepts_only_the_same_number_of_values():
    assert "gain: shape (2,), expected ()" in match_names(_state(gain=np.ones(2)), EXPECTED, TABLE).wrong_shape


def test_filter_buffer():
    check = names.filter_buffer((1, 3, 3, 1))
    f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    assert check("f", f) is None and check("f", f * 4) == "not the [1, 3, 3, 1] filter"
    assert names.filter_buffer((1, 3, 3, 1), normalise=True)("f", f * 4) is None
    assert check("f", f[:3, :3]) is not None


# ---------------------------------------------------------------------------------------------
# Every source format goes through the engine, and reports the same way.

def _edited_copy(state: dict, drop: str, extra: str, wrong: str | None = None) -> dict:
    state = dict(state)
    del state[drop]
    state[extra] = np.zeros(3, np.float32)
    if wrong is not None:
        state[wrong] = np.zeros(tuple(s + 1 for s in state[wrong].shape), np.float32)
    return state


def _nvidia(data_dir, tmp_path, **edit):
    sd = _edited_copy(dict(np.load(data_dir / "stylegan2" / "tiny_G_state.npz")), **edit)
    np.savez(tmp_path / "g.npz", **sd)
    return lambda dest: convert_stylegan2(str(tmp_path / "g.npz"), str(dest),
                                          init_kwargs=str(data_dir / "stylegan2" / "tiny_G_config.json"))


def _rosinality(data_dir, tmp_path, **edit):
    ckpt = load_torch(str(data_dir / "rosinality" / "res32_g_ema.pt"))
    g = _edited_copy(ckpt["g_ema"], **edit)
    torch.save({"g_ema": {k: torch.from_numpy(np.array(v)) for k, v in g.items()}}, tmp_path / "g.pt")
    return lambda dest: convert_stylegan2(str(tmp_path / "g.pt"), str(dest))


def _rosinality_d(data_dir, tmp_path, **edit):
    ckpt = load_torch(str(data_dir / "rosinality" / "res32_g_ema.pt"))
    d = _edited_copy(ckpt["d"], **edit)
    torch.save({"g_ema": {k: torch.from_numpy(np.array(v)) for k, v in ckpt["g_ema"].items()},
                "d": {k: torch.from_numpy(np.array(v)) for k, v in d.items()}}, tmp_path / "gd.pt")
    return lambda dest: convert_stylegan2(str(tmp_path / "gd.pt"), str(dest))


def _hf_folder(src, tmp_path, **edit):
    dst = tmp_path / "src"
    shutil.copytree(src, dst)
    (dst / "model.safetensors").chmod(0o644)
    save_file(_edited_copy(load_file(src / "model.safetensors"), **edit), dst / "model.safetensors")
    return dst


def _clip_hf(data_dir, tmp_path, **edit):
    src = _hf_folder(data_dir / "clip" / "tiny-clip-hf", tmp_path, **edit)
    return lambda dest: convert_clip(src, dest)


def _clip_openai(data_dir, tmp_path, **edit):
    save_file(_edited_copy(load_file(data_dir / "clip" / "tiny-clip-openai.safetensors"), **edit),
              tmp_path / "openai.safetensors")
    return lambda dest: convert_clip(tmp_path / "openai.safetensors", dest,
                                     tokenizer=str(data_dir / "clip" / "tiny-clip-hf"))


def _vit(data_dir, tmp_path, **edit):
    src = _hf_folder(data_dir / "vit" / "tiny-vit-celeba-hf", tmp_path, **edit)
    return lambda dest: convert_classifier(src, dest)


FORMATS = {  # source: (maker, a tensor to drop, one to mis-shape)
    "nvidia": (_nvidia, "synthesis.b16.conv0.affine.bias", "mapping.fc1.weight"),
    "rosinality": (_rosinality, "convs.3.conv.modulation.bias", "to_rgbs.1.conv.weight"),
    "rosinality-d": (_rosinality_d, "convs.2.conv2.2.bias", "final_linear.0.weight"),
    "clip-hf": (_clip_hf, "text_model.encoder.layers.1.mlp.fc2.bias", "visual_projection.weight"),
    "clip-openai": (_clip_openai, "transformer.resblocks.1.attn.in_proj_bias",
                    "visual.transformer.resblocks.0.attn.out_proj.weight"),
    "vit-hf": (_vit, "vit.encoder.layer.1.attention.attention.value.bias", "classifier.weight"),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_names_gaps_and_extras_the_same_way(fmt, data_dir, tmp_path):
    make, drop, wrong = FORMATS[fmt]
    convert = make(data_dir, tmp_path, drop=drop, extra="surplus.weight", wrong=wrong)
    with pytest.raises(InputError) as e:
        convert(tmp_path / "out")
    msg = str(e.value)
    assert "the tensors do not match the architecture its config describes: " in msg
    assert re.search(rf"missing tensors \(1\): {re.escape(drop)}( \(or [^)]*\))?(;|$)", msg), msg
    assert re.search(rf"wrong shape \(1\): {re.escape(wrong)}: shape \(", msg), msg
    assert re.search(r"unexpected tensors \(1\): surplus\.weight(;|$)", msg), msg
    assert not (tmp_path / "out").exists()


def test_constant_filters_are_checked_not_stored(data_dir, tmp_path):
    ckpt = load_torch(str(data_dir / "rosinality" / "res32_g_ema.pt"))
    g = dict(ckpt["g_ema"])
    kernel = next(k for k in g if k.endswith("blur.kernel"))
    g[kernel] = np.ones_like(g[kernel])
    torch.save({"g_ema": {k: torch.from_numpy(np.array(v)) for k, v in g.items()}}, tmp_path / "g.pt")
    with pytest.raises(InputError, match=rf"bad buffers \(1\): {re.escape(kernel)}: not the \[1.0, 3.0, 3.0, 1.0\]"):
        convert_stylegan2(str(tmp_path / "g.pt"), str(tmp_path / "out"))


def test_every_converter_maps_names_through_the_engine(data_dir, tmp_path, monkeypatch):
    seen = []
    real = names.match_names

    def spy(state, expected, table, **kw):
        seen.append(table)
        return real(state, expected, table, **kw)

    monkeypatch.setattr(names, "match_names", spy)
    convert_stylegan2(str(data_dir / "stylegan2" / "tiny_network_stripped.pkl"), str(tmp_path / "pkl"))  # G and D
    convert_stylegan2(str(data_dir / "rosinality" / "res32_g_ema.pt"), str(tmp_path / "ros"))  # g_ema and d
    convert_clip(data_dir / "clip" / "tiny-clip-hf", tmp_path / "clip")
    convert_clip(data_dir / "clip" / "tiny-clip-openai.safetensors", tmp_path / "openai")
    convert_classifier(data_dir / "vit" / "tiny-vit-celeba-hf", tmp_path / "vit")
    assert len(seen) == 7 and all(isinstance(t, NameTable) for t in seen)
