"""The compiled search's cache key (`Objective.program_spec`) cannot go stale: it is built from frozen
dataclasses (the whole InpaintConfig less the options marked `untraced`, the networks' configs, the
constraints' shapes), every option changes it or is marked, the marked ones provably do not change the
program, and data (image, mask, seeds, prompt texts, attribute targets, weights) never recompiles.

On the shipped 32x32 demo generator and classifier, the tiny CLIP fixture and LPIPS: lowering a
program (no compile) takes about a second, and the few real runs are 2 steps long."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convert_weights.clip import convert_clip
from jax_inpaint.inversion import search as S
from jax_inpaint.inversion.config import InpaintConfig, is_traced
from jax_inpaint.inversion.objective import Constraints, Models, ModelSpec, Objective, ProgramSpec
from jax_inpaint.models.clip import load_clip
from jax_inpaint.models.lpips import load_lpips
from jax_inpaint.models.stylegan2 import Generator, load_discriminator, load_generator
from jax_inpaint.models.vit import load_classifier

BASE = dict(steps=4, chunk=2, lpips=0.0)  # what every key and program here starts from
ATTRS = {"Smiling": 1.0, "Bangs": 0.0}
PROMPTS = ("a smiling face", "a face with glasses")

# Every InpaintConfig field: (another value, the options under which it matters, the constraints it
# needs). A new field fails `test_every_option_is_traced_or_marked` until it is listed here.
CHANGES = {
    "steps": (6, {}, None),
    "space": ("w", {}, None),
    "init": ("z", {}, None),
    "init_jitter": (0.5, {}, None),
    "init_trunc": (0.5, {"init": "z"}, None),
    "noise": ("const", {}, None),
    "schedule": ("nvidia", {}, None),
    "lr": (0.1, {}, None),
    "lr_decay": (0.5, {}, None),
    "lr_rampup": (0.1, {"schedule": "nvidia"}, None),
    "lr_rampdown": (0.5, {"schedule": "nvidia"}, None),
    "w_noise": (0.1, {}, None),
    "w_noise_ramp": (0.5, {"w_noise": 0.1}, None),
    "mse": (2.0, {}, None),
    "lpips": (1.0, {}, None),
    "lpips_mask": ("feature", {"lpips": 1.0}, None),
    "lpips_resize": (16, {"lpips": 1.0}, None),  # 32 px images: resized to 16 only when asked
    "noise_reg": (1.0, {"noise": "optimize"}, None),
    "w_avg_reg": (0.1, {}, None),
    "realism": (0.1, {}, None),
    "attr_weight": (2.0, {}, "attributes"),
    "attr_loss": ("margin", {}, "attributes"),
    "attr_epsilon": (0.2, {"attr_loss": "margin"}, "attributes"),
    "clip_weight": (2.0, {}, "prompts"),
    "diversity": (0.5, {}, None),
    "diversity_space": ("lpips", {"diversity": 0.5}, None),
    "loop": ("scan", {}, None),  # 'auto' is 'host' on CPU
    "remat": ("blocks", {}, None),
    "chunk": (1, {}, None),
    "batch": (3, {}, None),
    "feather": (5.0, {}, None),
}
UNTRACED = {"batch", "feather"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, data_dir):
    clip_dir = tmp_path_factory.mktemp("clip") / "clip"
    convert_clip(str(data_dir / "clip" / "tiny-clip-hf"), str(clip_dir))
    return Models(G=load_generator("demo-faces"), lpips=load_lpips(), clip=load_clip(clip_dir),
                  classifier=load_classifier("demo-faces"), D=load_discriminator("demo-faces"))


def constraints(kind, attrs=ATTRS, prompts=PROMPTS) -> Constraints:
    if kind == "attributes":
        return Constraints.make(attributes=attrs)
    if kind == "prompts":
        return Constraints.make(prompts=prompts)
    return Constraints.make(attributes=attrs, prompts=prompts) if kind == "both" else Constraints()


def objective(models, kind=None, **options) -> Objective:
    return Objective(models, InpaintConfig(**{**BASE, **options}), constraints(kind))


# ---------------------------------------------------------------------------------------------
# The key.

def test_every_option_is_traced_or_marked():
    fields = dataclasses.fields(InpaintConfig)
    assert set(CHANGES) == {f.name for f in fields}, "list a new option in CHANGES (and mark it if untraced)"
    assert {f.name for f in fields if not is_traced(f)} == UNTRACED
    for f in fields:
        if not is_traced(f):
            assert f.metadata["why"], f.name  # a marked option says where it acts instead


def _frozen_all_the_way(x, path="key"):
    """Every dataclass in the key is frozen, and every leaf hashable."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        assert x.__dataclass_params__.frozen, f"{path}: {type(x).__name__} is not a frozen dataclass"
        for f in dataclasses.fields(x):
            _frozen_all_the_way(getattr(x, f.name), f"{path}.{f.name}")
    elif isinstance(x, tuple):
        for i, v in enumerate(x):
            _frozen_all_the_way(v, f"{path}[{i}]")
    else:
        hash(x)


def test_the_key_is_built_from_frozen_dataclasses(models):
    obj = Objective(models, InpaintConfig(**{**BASE, "lpips": 1.0, "realism": 0.1}), constraints("both"))
    spec = obj.program_spec
    assert isinstance(spec, ProgramSpec)
    _frozen_all_the_way(spec)
    assert set(obj.uses) == {f.name for f in dataclasses.fields(Models)}  # each network: used or not
    assert [name for name, _ in spec.models] == ["G", "lpips", "clip", "classifier", "D"]
    assert dict(spec.models)["G"] == ModelSpec("Generator", models.G.config, (("dtype", jnp.float32), ("remat", False)))
    assert spec.attr_index == tuple(models.classifier.labels.index(n) for n in ATTRS)
    assert spec.num_prompts == 2 and spec.conditional is False
    # Networks the objective does not use are not in its key.
    assert [name for name, _ in objective(models).program_spec.models] == ["G"]


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_an_option_changes_the_key_unless_marked(models, name):
    value, context, kind = CHANGES[name]
    before = objective(models, kind, **context).program_spec
    after = objective(models, kind, **{**context, name: value}).program_spec
    assert (before != after) == (name not in UNTRACED)


def test_data_does_not_change_the_key(models):
    """Prompt texts and weights (same count), attribute targets (same attributes), other weights of
    the same networks: arguments of the program, not part of it."""
    cfg = InpaintConfig(**{**BASE, "lpips": 1.0})
    key = Objective(models, cfg, constraints("both")).program_spec
    other = Constraints.make(attributes={"Smiling": 0.2, "Bangs": 0.9},
                             prompts=[("an old face", 3.0), ("a face with a hat", 0.5)])
    G = models.G
    G2 = Generator(G.config, jax.tree.map(lambda x: x + 1, G.params), G.buffers)
    assert Objective(dataclasses.replace(models, G=G2), cfg, other).program_spec == key
    # ... but which attributes, how many prompts, the networks' configs and dtype, a class vector do.
    changed = [Constraints.make(attributes={"Bangs": 0.0, "Smiling": 1.0}, prompts=PROMPTS),
               Constraints.make(attributes=ATTRS, prompts=PROMPTS[:1])]
    for c in changed:
        assert Objective(models, cfg, c).program_spec != key
    G16 = Generator(G.config, G.params, G.buffers, dtype=jnp.bfloat16)
    assert Objective(dataclasses.replace(models, G=G16), cfg, constraints("both")).program_spec != key
    assert Objective(models, cfg, constraints("both"), c=np.ones(3)).program_spec != key


# ---------------------------------------------------------------------------------------------
# The programs: what the key leaves out provably does not change them; what it holds does.

_TEXTS: dict = {}


def program_text(models, kind, options: dict) -> str:
    """The search's programs (init and chunk, batch 1) as lowered text: nothing compiled."""
    key = (kind, tuple(sorted(options.items())))
    if key not in _TEXTS:
        obj = objective(models, kind, **options)
        lowered = S.Search(obj, 1).lower(jax.eval_shape(obj.frozen))  # shapes: nothing computed
        _TEXTS[key] = lowered["init"].as_text() + lowered["chunk"].as_text()
    return _TEXTS[key]


# Every option marked untraced, and a sample of the traced ones (each kind of place an option acts:
# the init program, a constant of the schedule, the loss terms, one only under another option) to
# show the comparison sees a change; all of them take ~40 s on 2 CPU cores.
PROGRAM_CHECKS = sorted(UNTRACED) + ["init_jitter", "lr_decay", "lpips_resize", "attr_epsilon", "clip_weight"]


@pytest.mark.parametrize("name", PROGRAM_CHECKS)
def test_the_key_holds_exactly_what_changes_the_program(models, name):
    value, context, kind = CHANGES[name]
    before = program_text(models, kind, context)
    after = program_text(models, kind, {**context, name: value})
    if name in UNTRACED:
        assert before == after, f"{name} is marked untraced but changes the program"
    else:
        assert before != after, f"{name} does not change the program under {context}"


# ---------------------------------------------------------------------------------------------
# Real runs: the trace counter of the compiled search.

RES = 32


def _inputs(seed):
    rng = np.random.RandomState(seed)
    target = rng.uniform(-1, 1, (RES, RES, 3)).astype(np.float32)
    known = np.ones((RES, RES), np.float32)
    top = rng.randint(4, 16)
    known[top:top + 12, 8:24] = 0
    return target, known


def _run(obj, seeds, data_seed):
    search = S.get_search(obj, 2)
    target, known = _inputs(data_seed)
    return search, search.run(seeds, obj.frozen(), target, known, 0.5)


RUN = dict(steps=2, chunk=2)


def test_new_data_reuses_the_compiled_program(models):
    """Another image, mask, seeds, prompt texts (same count) and attribute targets: the same search,
    no new trace, and (a check that the data did arrive) other results."""
    S._SEARCHES.clear()
    first = Objective(models, InpaintConfig(**{**BASE, **RUN}), constraints("both"))
    search, a = _run(first, [0, 1], data_seed=0)
    assert search.traces == 1
    other = Constraints.make(attributes={"Smiling": 0.0, "Bangs": 1.0}, prompts=["an old face", "a red hat"])
    second = Objective(models, InpaintConfig(**{**BASE, **RUN, "feather": 4.0, "batch": 2}), other)
    again, b = _run(second, [7, 8], data_seed=1)
    assert again is search and search.traces == 1
    assert not np.allclose(a.best_loss, b.best_loss)


def test_traced_options_compile_anew(models):
    """Each run with a changed option traces (and compiles) a search of its own; the first one is
    still cached and untouched."""
    S._SEARCHES.clear()
    base = Objective(models, InpaintConfig(**{**BASE, **RUN}))
    search, _ = _run(base, [0, 1], data_seed=0)
    for change in ({"lr": 0.2}, {"noise": "const"}, {"mse": 2.0, "w_avg_reg": 0.1}):
        other, _ = _run(Objective(models, InpaintConfig(**{**BASE, **RUN, **change})), [0, 1], data_seed=0)
        assert other is not search and other.traces == 1, change
    assert S.get_search(Objective(models, InpaintConfig(**{**BASE, **RUN})), 2) is search
    assert search.traces == 1
