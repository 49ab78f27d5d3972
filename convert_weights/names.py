"""The one name-table engine: checkpoint tensor names -> our parameter trees, for every source format.

A `NameTable` is a list of rules and a list of tolerated extras:

  rules   ``(ours, source, transform)``:
            ours       a regex over our flattened parameter names ('params.mapping.fc0.weight');
            source     the source tensor to read: a template expanded with the match
                       (r'mapping.\\1.weight'), a tuple of templates (the first one present wins:
                       a layout with several spellings), or a function of the match returning
                       the name(s) (computed with arithmetic, e.g. rosinality's layer indices);
            transform  source layout -> ours (`Transform`); it also gives the source shape a
                       parameter of a given shape needs, so shapes are checked before converting.
  ignore  ``{source regex: check(name, array) -> None if fine, else a complaint}``: source tensors
          the architecture does not use (constant buffers), accepted only when their check passes.

`match_names(state, expected, table)` walks the parameters the architecture expects (from its
config: every gap is known by name) through the first rule whose `ours` matches, and returns a
`Match`: the converted arrays plus every gap (a parameter no rule fills, a source tensor missing or
mis-shaped) and every extra (a source tensor no rule used). `Match.check(what)` raises one
InputError listing them all by SOURCE name, worded the same for every format; `convert` does both.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from jax_inpaint.errors import InputError
from jax_inpaint.models.folders import flatten

# ---------------------------------------------------------------------------------------------
# Transforms: source layout -> ours, and the source shape a parameter of a given shape needs.


@dataclasses.dataclass(frozen=True)
class Transform:
    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    source_shape: Callable[[tuple], tuple]
    any_shape: bool = False  # accept any source shape with as many values (reshaped to `source_shape`)

    def then(self, other: "Transform") -> "Transform":
        """This transform, then `other` (e.g. squeeze a leading 1, then OIHW -> HWIO)."""
        return Transform(f"{self.name}+{other.name}", lambda a: other.apply(self.apply(a)),
                         lambda s: self.source_shape(other.source_shape(s)), self.any_shape)


SAME = Transform("same", lambda a: a, lambda s: tuple(s))
DENSE = Transform("transpose", lambda a: a.T, lambda s: tuple(reversed(s)))  # torch Linear [out, in] -> [in, out]
CONV = Transform("OIHW->HWIO", lambda a: a.transpose(2, 3, 1, 0), lambda s: (s[3], s[2], s[0], s[1]))
CHW = Transform("CHW->HWC", lambda a: a.transpose(1, 2, 0), lambda s: (s[2], s[0], s[1]))
RESHAPE = Transform("reshape", lambda a: a, lambda s: tuple(s), any_shape=True)  # [1, C, 1, 1] -> [C]; [1] -> []


def squeeze_leading(k: int) -> Transform:
    """[1, ..., 1, *shape] -> shape (e.g. ViT's cls_token [1, 1, D] -> [D])."""
    return Transform(f"squeeze{k}", lambda a: a.reshape(a.shape[k:]), lambda s: (1,) * k + tuple(s))


def chunk(i: int, n: int, inner: Transform = SAME) -> Transform:
    """Part i of n along axis 0, then `inner` (OpenAI's fused in_proj_weight [3D, D] -> q, k, v)."""
    def apply(a):
        size = a.shape[0] // n
        return inner.apply(a[i * size:(i + 1) * size])

    def source_shape(s):
        part = inner.source_shape(s)
        return (part[0] * n,) + tuple(part[1:])

    return Transform(f"chunk{i}/{n}+{inner.name}", apply, source_shape)


# ---------------------------------------------------------------------------------------------
# Tables.

Check = Callable[[str, np.ndarray], "str | None"]


@dataclasses.dataclass(frozen=True)
class Rule:
    ours: str
    source: str | tuple[str, ...] | Callable[[re.Match], str | tuple[str, ...]]
    transform: Transform

    def sources(self, m: re.Match) -> tuple[str, ...]:
        """The source name(s) to look for: templates expanded with `m`, a function's result as it is."""
        if callable(self.source):
            src = self.source(m)
            return (src,) if isinstance(src, str) else tuple(src)
        return tuple(m.expand(t) for t in ((self.source,) if isinstance(self.source, str) else self.source))


@dataclasses.dataclass(frozen=True)
class NameTable:
    rules: tuple[Rule, ...]
    ignore: tuple[tuple[str, Check], ...] = ()

    @classmethod
    def of(cls, rules: Iterable, ignore: Mapping[str, Check] | None = None) -> "NameTable":
        """A table from (ours, source, transform) triples and {source regex: check}."""
        return cls(tuple(r if isinstance(r, Rule) else Rule(*r) for r in rules), tuple((ignore or {}).items()))

    def rule_for(self, name: str) -> tuple[Rule | None, re.Match | None]:
        for rule in self.rules:
            m = re.fullmatch(rule.ours, name)
            if m:
                return rule, m
        return None, None

    def check_for(self, source_name: str) -> Check | None:
        return next((fn for pattern, fn in self.ignore if re.fullmatch(pattern, source_name)), None)


def no_check(name: str, value: np.ndarray) -> None:
    """For tolerated extras whose values do not matter (a pooler the model drops, metadata scalars)."""
    return None


def arange_buffer(name: str, value: np.ndarray) -> str | None:
    """Check for HF's position_ids buffers: [1, L] (or [L]) equal to 0 .. L-1."""
    flat = value.reshape(-1)
    if value.ndim in (1, 2) and np.array_equal(flat, np.arange(flat.size)):
        return None
    return f"expected 0, 1, ..., {flat.size - 1}"


def filter_buffer(taps: Sequence[float], *, normalise: bool = False, atol: float = 1e-7,
                  rtol: float = 0.0) -> Check:
    """Check for a constant 2-D resampling filter: outer(taps, taps) / its sum (`normalise`: the
    tensor is compared after dividing it by its own sum, so any scale passes)."""
    f = np.outer(taps, taps)
    f = f / f.sum()

    def check(name: str, value: np.ndarray) -> str | None:
        with np.errstate(all="ignore"):
            v = value / value.sum() if normalise else value
        if v.shape == f.shape and np.allclose(v, f, rtol=rtol, atol=atol):
            return None
        return f"not the {list(taps)} filter"
    return check


# ---------------------------------------------------------------------------------------------
# The engine.

@dataclasses.dataclass
class Match:
    """What `match_names` found. Gaps: `unruled`, `missing`, `wrong_shape`; extras: `unused`, `bad_extras`."""
    params: dict[str, np.ndarray]   # {our dotted name: float32 array}
    unruled: list[str]              # our parameters no rule covers
    missing: list[str]              # source tensors the rules name that the source lacks
    wrong_shape: list[str]          # 'source: shape (..), expected (..)'
    unused: list[str]               # source tensors no rule used (and not tolerated)
    bad_extras: list[str]           # tolerated source tensors whose check failed

    @property
    def problems(self) -> list[str]:
        parts = [("parameters no rule fills", self.unruled, ", "), ("missing tensors", self.missing, ", "),
                 ("wrong shape", self.wrong_shape, "; "), ("unexpected tensors", self.unused, ", "),
                 ("bad buffers", self.bad_extras, "; ")]
        return [f"{label} ({len(items)}): {sep.join(items)}" for label, items, sep in parts if items]

    def check(self, what: str) -> dict[str, np.ndarray]:
        """The converted arrays, or one InputError naming every gap and extra."""
        if self.problems:
            raise InputError(f"{what}: the tensors do not match the architecture its config describes: "
                             + "; ".join(self.problems))
        return self.params


def expected_shapes(tree) -> dict[str, tuple]:
    """Nested dict of arrays / ShapeDtypeStructs (e.g. `jax.eval_shape` of a module's init) -> {'a.b.c': shape}."""
    return {k: tuple(v.shape) for k, v in flatten(tree).items()}


def match_names(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple], table: NameTable, *,
                optional: Iterable[str] = ()) -> Match:
    """Fill every expected parameter {our dotted name: shape} from `state` {source name: array}.

    optional: our names that may be left unfilled when no rule covers them or their source tensor
    is absent (a StyleGAN2 w_avg, estimated afterwards): not gaps, and absent from `params`.
    """
    optional = set(optional)
    params: dict[str, np.ndarray] = {}
    used: set[str] = set()
    unruled, missing, wrong = [], [], []
    for name, shape in expected.items():
        rule, m = table.rule_for(name)
        if rule is None:
            if name not in optional:
                unruled.append(name)
            continue
        candidates = rule.sources(m)
        src = next((c for c in candidates if c in state), None)
        if src is None:
            gap = candidates[0] + (f" (or {', '.join(candidates[1:])})" if len(candidates) > 1 else "")
            if name not in optional and gap not in missing:  # (one fused tensor may feed several parameters)
                missing.append(gap)
            continue
        used.add(src)
        value = np.asarray(state[src])
        want = tuple(rule.transform.source_shape(tuple(shape)))
        if value.shape != want:
            if not (rule.transform.any_shape and value.size == math.prod(want)):
                if (line := f"{src}: shape {value.shape}, expected {want}") not in wrong:
                    wrong.append(line)
                continue
            value = value.reshape(want)
        params[name] = np.array(rule.transform.apply(value), dtype=np.float32, order="C")  # (0-d stays 0-d)
    unused, bad = [], []
    for src in sorted(set(state) - used):
        check = table.check_for(src)
        if check is None:
            unused.append(src)
        elif (complaint := check(src, np.asarray(state[src]))) is not None:
            bad.append(f"{src}: {complaint}")
    return Match(params, unruled, missing, wrong, unused, bad)


def convert(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple], table: NameTable, what: str, *,
            optional: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """`match_names(...).check(what)`: {our dotted name: float32 array}, or one InputError."""
    return match_names(state, expected, table, optional=optional).check(what)


__all__ = ["Transform", "SAME", "DENSE", "CONV", "CHW", "RESHAPE", "squeeze_leading", "chunk", "Rule", "NameTable",
           "no_check", "arange_buffer", "filter_buffer", "Match", "expected_shapes", "match_names", "convert"]
