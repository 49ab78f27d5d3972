"""Training the demo CLIP (`--clip demo-faces`): a tiny CLIP learnt contrastively on the renderer's faces.

The model is our `jax_inpaint.models.clip.CLIPModule` (Hugging Face CLIPModel layout) with the real CLIP BPE
tokenizer (vocab.json / merges.txt, as in tests/data/clip), so the shipped folder loads, tokenizes and scores
with `load_clip` like any converted CLIP.

Texts. Every training image (a render of `faces.render_dataset(seed=0)`, the data the demo GAN and classifier
learnt from) gets a text drawn afresh at every step from what its `FaceSpec` says: the renderer's own caption
(`faces.caption`) or a composed one naming a random few of the face's *facts* (`CONCEPTS`: smiling, an open
mouth, glasses, lipstick and its colour, a hat, hair colour ..., and the sex), present ones with varied phrasings
("a smiling face", "a woman with glasses and red lipstick", "wearing a hat") and absent ones negated ("a face
without eyeglasses", "with no beard", "not smiling"). Single-fact texts in the form "a face with X" /
"a face without X" are frequent: that is how the demo's prompts are written.

Loss. Beside each image's text, a *hard negative*: the same text with one of its facts flipped ("with
glasses" <-> "without glasses", man <-> woman). The loss is CLIP's symmetric contrastive loss over the batch,
image -> (texts and hard negatives) and text -> images, with every pair whose facts agree counted as a positive
(a batch holds many faces "without a hat"; they are not negatives of each other): for each row, the log of the
softmax mass on its positives. Plus, as denser supervision of the same kind, a two-way contrastive term per
fact: every image against a single-fact text pair of every concept ("a face with X" / "a face without X",
phrased afresh each step), the true one to win. And, for the vision tower alone, an auxiliary linear head on
the image embedding that predicts the facts (binary cross-entropy; the head is dropped after training): a
ViT from scratch learns small local features (a smile, thin glasses frames) slowly from the contrastive
signal, whose text side starts out as noise; the head gives it the direct signal the demo classifier learns
from, and the text tower (at `text_lr_scale` times the learning rate) aligns to what it finds. AdamW with a
warm-up and cosine decay, global-norm clipping, the learnt temperature capped at 100 as CLIP's.

Vocabulary. The text tower learns only the tokens that training texts contain (about a hundred of CLIP's 49408);
the others keep a zero embedding (a word the model never saw contributes only its position). Training uses a
compact embedding table of those tokens; `export` scatters it into the full table, whose zero rows compress to
nothing, and stores the weights in float16.

`train(cfg, out)` resumes from the newest orbax checkpoint in `out/checkpoints`, shows a tqdm bar and writes
log.jsonl; `export(out, dest)` writes the model folder (with the tokenizer files and the held-out with/without
accuracy per attribute in model.json). `bin/train_demo_clip.py` drives both.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_inpaint import files
from jax_inpaint.demo.train_gan import checkpoint_manager, close_run, machine_description, save_checkpoint
from jax_inpaint.errors import InputError
from jax_inpaint.models.clip import CLIP, CLIPConfig, CLIPModule, CLIPTextConfig, CLIPVisionConfig
from jax_inpaint.models.transformer import EncoderConfig, ImagePreprocess

Array = jax.Array

TRAIN_DATA_SEED = 0     # the renders the GAN, the classifier and the CLIP learn from
HELDOUT_DATA_SEED = 1   # held-out renders for the accuracy recorded in model.json (as the classifier's)
VOCAB_SIZE = 49408      # CLIP's BPE vocabulary
SOT, EOT = 49406, 49407


@dataclasses.dataclass(frozen=True)
class ClipTrainConfig:
    """Everything that defines a demo CLIP training run (saved beside its checkpoints)."""
    image_size: int = 32
    patch_size: int = 4
    vision_width: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 32
    projection_dim: int = 64
    batch: int = 64
    steps: int = 5000
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 100
    caption_rate: float = 0.25      # texts that are the renderer's own caption
    concept_weight: float = 1.0     # of the per-fact two-way term
    concept_context: int = 16       # positions of the single-fact texts (all fit)
    aux_weight: float = 2.0         # of the auxiliary head (the facts from the image embedding, training only)
    max_pos_weight: float = 4.0     # rare facts' positives weigh (1 - p) / p, at most this (both per-fact terms)
    text_lr_scale: float = 3.0      # the text tower's learning rate, relative to lr
    num_images: int = 40000
    data_seed: int = TRAIN_DATA_SEED
    heldout_seed: int = HELDOUT_DATA_SEED
    heldout_images: int = 1000
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise InputError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for what in ("vision", "text"):
            if getattr(self, f"{what}_width") % getattr(self, f"{what}_heads"):
                raise InputError(f"{what}_width is not a multiple of {what}_heads")
        if self.data_seed in (self.heldout_seed,):
            raise InputError("the held-out data seed must differ from the training data seed")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d) -> "ClipTrainConfig":
        return cls(**dict(d))


def model_config(cfg: ClipTrainConfig, vocab_size: int = VOCAB_SIZE, eos_token_id: int = EOT) -> CLIPConfig:
    """The CLIP of a training config: quick_gelu pre-LN towers, input [-1, 1] as it is (mean = std = 0.5)."""
    size = (cfg.image_size, cfg.image_size)
    return CLIPConfig(
        vision=CLIPVisionConfig(size, (cfg.patch_size, cfg.patch_size), 3,
                                EncoderConfig(cfg.vision_width, cfg.vision_layers, cfg.vision_heads,
                                              4 * cfg.vision_width, "quick_gelu", 1e-5)),
        text=CLIPTextConfig(vocab_size, cfg.context_length, eos_token_id,
                            EncoderConfig(cfg.text_width, cfg.text_layers, cfg.text_heads, 4 * cfg.text_width,
                                          "quick_gelu", 1e-5)),
        projection_dim=cfg.projection_dim,
        preprocess=ImagePreprocess("exact", size, None, (0.5,) * 3, (0.5,) * 3, "linear"))


# ---------------------------------------------------------------------------------------------
# Facts about a face and the texts that state them.

@dataclasses.dataclass(frozen=True)
class Concept:
    """One fact a text can state about a face. `present`: noun phrases for "with X" (or "wearing X");
    `absent`: phrases that state the fact is false on their own (beside the automatic "without X",
    "with no X", "not wearing X"); `adjective`: a word that goes before the subject ("a smiling face")."""
    name: str
    test: Callable[[Any], bool]
    present: tuple[str, ...]
    absent: tuple[tuple[str, str], ...] = ()    # (group, phrase): group "with", "bare" or "adj" (before the noun)
    adjective: str | None = None
    wearing: tuple[str, ...] = ()               # nouns that also go with "wearing X" / "not wearing X"


def _haired(s) -> bool:
    return s.hair_style != "bald"


def _concepts() -> tuple[Concept, ...]:
    from jax_inpaint.demo.faces import HAIR_COLOURS, LIPSTICKS, PALE_TONE

    hair_names = {"black": ("black hair", "dark hair"), "brown": ("brown hair",), "blond": ("blond hair", "blonde hair"),
                  "gray": ("gray hair", "grey hair"), "red": ("red hair", "ginger hair")}
    out = [
        Concept("male", lambda s: s.male, ()),   # stated by the subject: man / woman
        Concept("smiling", lambda s: s.smiling, ("a smile", "a smiling mouth"),
                (("bare", "not smiling"), ("with", "a neutral expression")), adjective="smiling"),
        Concept("mouth_open", lambda s: s.mouth_open, ("an open mouth", "parted lips", "teeth showing"),
                (("with", "a closed mouth"), ("with", "closed lips"))),
        Concept("glasses", lambda s: s.glasses, ("glasses", "eyeglasses", "spectacles"),
                wearing=("glasses", "eyeglasses", "spectacles")),
        Concept("lipstick", lambda s: bool(s.lipstick), ("lipstick", "painted lips"),
                (("with", "natural lips"), ("with", "bare lips")), wearing=("lipstick",)),
        *[Concept(f"lipstick_{c}", (lambda c: lambda s: s.lipstick == c)(c), (f"{c} lipstick", f"{c} lips"))
          for c in LIPSTICKS],
        Concept("hat", lambda s: s.hat and _haired(s), ("a hat", "a beanie", "a wool hat"),
                wearing=("a hat", "a beanie")),
        Concept("necklace", lambda s: s.necklace, ("a necklace", "a chain"), wearing=("a necklace",)),
        Concept("necktie", lambda s: s.necktie, ("a tie", "a necktie"), wearing=("a tie", "a necktie")),
        Concept("bangs", lambda s: s.bangs and _haired(s), ("bangs", "a fringe")),
        Concept("bald", lambda s: not _haired(s), ("a bald head", "no hair"), (("with", "hair"),),
                adjective="bald"),
        *[Concept(f"hair_{c}", (lambda c: lambda s: _haired(s) and s.hair_colour == c)(c), hair_names[c])
          for c in HAIR_COLOURS],
        Concept("hair_long", lambda s: _haired(s) and s.hair_style == "long", ("long hair",)),
        Concept("hair_short", lambda s: _haired(s) and s.hair_style == "short", ("short hair",)),
        Concept("beard", lambda s: s.beard != "none", ("a beard", "facial hair"),
                (("adj", "clean-shaven"), ("with", "a shaved chin"))),
        Concept("moustache", lambda s: s.beard in ("mustache", "both", "full"), ("a moustache", "a mustache")),
        Concept("goatee", lambda s: s.beard in ("goatee", "both", "full"), ("a goatee",)),
        Concept("full_beard", lambda s: s.beard == "full", ("a full beard", "sideburns")),
        Concept("bushy_brows", lambda s: s.bushy_brows, ("bushy eyebrows", "thick eyebrows", "bushy brows")),
        Concept("pale", lambda s: s.skin_tone < PALE_TONE, ("pale skin", "fair skin")),
        Concept("rosy", lambda s: s.rosy_cheeks, ("rosy cheeks", "pink cheeks", "blushing cheeks")),
    ]
    return tuple(out)


CONCEPTS: tuple[Concept, ...] = _concepts()
SUBJECTS = ("a face", "a face", "a face", "a person", "a portrait", "a photo of a face", "a picture of a person",
            "a drawing of a face", "a cartoon face")
SUBJECTS_SEX = {True: ("a man", "a man", "a male face", "a face of a man", "a guy"),
                False: ("a woman", "a woman", "a female face", "a face of a woman", "a lady")}

# The prompt pairs of the with/without accuracy: (the attribute holds, it does not), per renderer ATTRIBUTE.
PROMPT_PAIRS: dict[str, tuple[str, str]] = {
    "Bald": ("a face with a bald head", "a face without a bald head"),
    "Bangs": ("a face with bangs", "a face without bangs"),
    "Black_Hair": ("a face with black hair", "a face without black hair"),
    "Blond_Hair": ("a face with blond hair", "a face without blond hair"),
    "Brown_Hair": ("a face with brown hair", "a face without brown hair"),
    "Bushy_Eyebrows": ("a face with bushy eyebrows", "a face without bushy eyebrows"),
    "Eyeglasses": ("a face with eyeglasses", "a face without eyeglasses"),
    "Goatee": ("a face with a goatee", "a face without a goatee"),
    "Gray_Hair": ("a face with gray hair", "a face without gray hair"),
    "Male": ("a face of a man", "a face of a woman"),
    "Mouth_Slightly_Open": ("a face with an open mouth", "a face without an open mouth"),
    "Mustache": ("a face with a moustache", "a face without a moustache"),
    "No_Beard": ("a face without a beard", "a face with a beard"),
    "Pale_Skin": ("a face with pale skin", "a face without pale skin"),
    "Rosy_Cheeks": ("a face with rosy cheeks", "a face without rosy cheeks"),
    "Sideburns": ("a face with sideburns", "a face without sideburns"),
    "Smiling": ("a face with a smile", "a face without a smile"),
    "Wearing_Hat": ("a face with a hat", "a face without a hat"),
    "Wearing_Lipstick": ("a face with lipstick", "a face without lipstick"),
    "Wearing_Necklace": ("a face with a necklace", "a face without a necklace"),
    "Wearing_Necktie": ("a face with a tie", "a face without a tie"),
}

_FACT_COUNTS = np.array([1, 2, 3, 4, 5, 6])
_FACT_PROBS = np.array([0.32, 0.22, 0.17, 0.12, 0.1, 0.07])


def concept_values(spec) -> np.ndarray:
    """bool [len(CONCEPTS)]: which facts hold for a face."""
    return np.array([c.test(spec) for c in CONCEPTS], bool)


def _bare(noun: str) -> str:
    for article in ("a ", "an "):
        if noun.startswith(article):
            return noun[len(article):]
    return noun


def _join(items: Sequence[str], conj: str = "and") -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {conj} " + items[-1]


def _phrase(concept: Concept, value: bool, choice: int) -> tuple[str, str]:
    """(group, phrase) stating `concept` is `value`; `choice` picks among the phrasings."""
    if value:
        if concept.wearing and (choice // 7) % 2:
            return "wearing", concept.wearing[choice % len(concept.wearing)]
        return "with", concept.present[choice % len(concept.present)]
    options = [("without", n) for n in concept.present] + [("with no", _bare(n)) for n in concept.present[:1]]
    if concept.wearing:
        options.append(("not wearing", concept.wearing[0]))
    options += list(concept.absent)
    return options[choice % len(options)]


def compose(facts: Sequence[tuple[int, bool]], choices: dict) -> str:
    """A text stating `facts` [(concept index, value)], phrased by `choices` (subject, per-concept phrasing,
    whether adjectives are used, clause order), e.g. 'a smiling woman with glasses, without a hat'."""
    groups: dict[str, list[str]] = {"with": [], "without": [], "with no": [], "wearing": [], "not wearing": [],
                                    "bare": []}
    adjectives, sex = [], None
    for ci, value in facts:
        c = CONCEPTS[ci]
        if c.name == "male":
            sex = value
            continue
        if value and c.adjective and choices["adjective"]:
            adjectives.append(c.adjective)
            continue
        if not value and c.adjective and choices["adjective"] and c.name == "smiling":
            groups["bare"].append("not smiling")
            continue
        group, text = _phrase(c, value, int(choices["phrase"][ci]))
        if group == "adj":
            adjectives.append(text)
        else:
            groups[group].append(text)
    if sex is None:
        subject = SUBJECTS[choices["subject"] % len(SUBJECTS)]
    else:
        subject = SUBJECTS_SEX[sex][choices["subject"] % len(SUBJECTS_SEX[sex])]
    if adjectives:
        head, _, noun = subject.rpartition(" ")
        subject = f"{head} {' '.join(adjectives)} {noun}"
    clauses = []
    if groups["with"]:
        clauses.append("with " + _join(groups["with"]))
    if groups["with no"]:
        clauses.append("with no " + _join(groups["with no"], "or"))
    if groups["without"]:
        clauses.append("without " + _join(groups["without"], choices["conj"]))
    if groups["wearing"]:
        clauses.append("wearing " + _join(groups["wearing"]))
    if groups["not wearing"]:
        clauses.append("not wearing " + _join(groups["not wearing"], "or"))
    clauses += groups["bare"]
    order = choices["order"] % max(len(clauses), 1)
    clauses = clauses[order:] + clauses[:order]
    if not clauses:
        return subject
    return subject + " " + clauses[0] + "".join(", " + c for c in clauses[1:])


def caption_facts(spec) -> list[tuple[int, bool]]:
    """The facts `faces.caption(spec)` states: every concept, present or absent (the caption names every
    feature a face has, so what it does not name, the face has not: "a woman with long black hair" wears
    no glasses)."""
    return [(i, bool(v)) for i, v in enumerate(concept_values(spec))]


def flipped_caption_spec(rng: np.random.Generator, spec):
    """The spec with one feature that its caption names changed (smile, open mouth, glasses, lipstick, hat,
    necklace, tie, bangs, brows, cheeks, pale skin, sex, hair colour or length): the caption's hard negative."""
    from jax_inpaint.demo.faces import HAIR_COLOURS, LIPSTICKS, PALE_TONE

    haired = spec.hair_style != "bald"
    options = ["smiling", "mouth_open", "glasses", "lipstick", "necklace", "necktie", "bushy_brows", "rosy_cheeks",
               "male", "pale"] + (["hat", "bangs", "hair_colour", "hair_style"] if haired else [])
    what = options[int(rng.integers(len(options)))]
    if what == "lipstick":
        return dataclasses.replace(spec, lipstick="" if spec.lipstick else
                                   list(LIPSTICKS)[int(rng.integers(len(LIPSTICKS)))])
    if what == "pale":
        return dataclasses.replace(spec, skin_tone=0.5 if spec.skin_tone < PALE_TONE else 0.05)
    if what == "hair_colour":
        others = [c for c in HAIR_COLOURS if c != spec.hair_colour]
        return dataclasses.replace(spec, hair_colour=others[int(rng.integers(len(others)))])
    if what == "hair_style":
        return dataclasses.replace(spec, hair_style="long" if spec.hair_style == "short" else "short")
    return dataclasses.replace(spec, **{what: not getattr(spec, what)})   # the option is the FaceSpec field


def sample_texts(rng: np.random.Generator, values: np.ndarray, specs: Sequence, caption_rate: float
                 ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """For faces with concept values [N, C]: a text each and its hard negative (one fact flipped; for the
    renderer's caption, the caption of the face with one feature changed).
    Returns (texts, negatives, stated [2N, C] bool, claimed [2N, C] bool): which facts each of the 2N
    texts states and the values it claims."""
    from jax_inpaint.demo.faces import caption

    n, c = values.shape
    texts, negs = [], []
    stated = np.zeros((2 * n, c), bool)
    claimed = np.zeros((2 * n, c), bool)
    for i in range(n):
        choices = {"subject": int(rng.integers(1 << 16)), "adjective": bool(rng.random() < 0.5),
                   "order": int(rng.integers(4)) if rng.random() < 0.3 else 0,
                   "conj": "or" if rng.random() < 0.5 else "and",
                   "phrase": rng.integers(1 << 16, size=c)}
        if rng.random() < caption_rate:   # the renderer's caption against the caption of a changed face
            wrong = flipped_caption_spec(rng, specs[i])
            facts, neg_facts = caption_facts(specs[i]), caption_facts(wrong)
            texts.append(caption(specs[i]))
            negs.append(caption(wrong))
        else:
            k = int(rng.choice(_FACT_COUNTS, p=_FACT_PROBS))
            # The sex is stated in about a third of the texts; other concepts uniformly.
            pool = list(range(1, c))
            chosen = list(rng.choice(pool, size=min(k, len(pool)), replace=False))
            if rng.random() < 0.3:
                chosen.append(0)
            facts = [(int(ci), bool(values[i, ci])) for ci in chosen]
            flip = int(rng.integers(len(facts)))
            neg_facts = [(ci, (not v) if j == flip else v) for j, (ci, v) in enumerate(facts)]
            texts.append(compose(facts, choices))
            negs.append(compose(neg_facts, choices))
        for row, fs in ((i, facts), (n + i, neg_facts)):
            for ci, v in fs:
                stated[row, ci], claimed[row, ci] = True, v
    return texts, negs, stated, claimed


def agreement(values: np.ndarray, stated: np.ndarray, claimed: np.ndarray) -> np.ndarray:
    """bool [N images, T texts]: every fact text t states is true of image n."""
    wrong = stated[None] & (values[:, None] != claimed[None])
    return ~wrong.any(-1)


# ---------------------------------------------------------------------------------------------
# Tokens.

def default_tokenizer_dir() -> str:
    """The real CLIP BPE files: the shipped demo CLIP's, or the test data's of a source checkout."""
    from jax_inpaint.models.shipped import ASSETS

    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(ASSETS, "clip", "demo-faces", "tokenizer"),
                 os.path.join(here, "..", "..", "tests", "data", "clip", "tiny-clip-hf")):
        if os.path.isfile(os.path.join(path, "vocab.json")):
            return os.path.normpath(path)
    raise InputError("no CLIP tokenizer files found: pass --tokenizer DIR (a folder with vocab.json and merges.txt)")


class Tokens:
    """Texts -> token ids of the compact training vocabulary, word by word (CLIP's BPE never joins across
    whitespace, so a text's ids are its words' ids; `check` verifies it against the tokenizer)."""

    def __init__(self, tokenizer, vocab: np.ndarray, context: int):
        self.tokenizer, self.context = tokenizer, context
        self.vocab = np.asarray(vocab, np.int64)          # sorted full ids; EOT (the largest) last
        self.lut = np.full(VOCAB_SIZE, -1, np.int64)
        self.lut[self.vocab] = np.arange(len(self.vocab))
        self._words: dict[str, list[int]] = {}

    def full_ids(self, text: str) -> list[int]:
        out = [SOT]
        for w in text.split():
            if w not in self._words:
                self._words[w] = self.tokenizer(w, add_special_tokens=False)["input_ids"]
            out += self._words[w]
        return out + [EOT]

    def __call__(self, texts: Sequence[str], context: int | None = None) -> np.ndarray:
        """Compact ids int32 [N, context], padded with EOT (as the HF CLIP tokenizer pads); a longer text is
        truncated with EOT kept (as `CLIP.tokenize` does: about 0.5 % of the composed texts at 32 tokens)."""
        context = context or self.context
        out = np.full((len(texts), context), self.lut[EOT], np.int32)
        for i, t in enumerate(texts):
            ids = self.full_ids(t)
            if len(ids) > context:
                ids = ids[:context - 1] + [EOT]
            compact = self.lut[ids]
            if (compact < 0).any():
                raise InputError(f"training text {t!r} has tokens outside the training vocabulary")
            out[i, :len(ids)] = compact
        return out

    def check(self, texts: Sequence[str]) -> None:
        """The word-by-word ids equal the tokenizer's own on these texts."""
        for t in texts:
            ref = self.tokenizer(t)["input_ids"]
            if ref != self.full_ids(t):
                raise AssertionError(f"word-by-word tokens differ from the tokenizer's for {t!r}")


def training_vocabulary(tokenizer, specs: Sequence, rng_seed: int = 0, samples: int = 4000) -> np.ndarray:
    """Every token that training texts can contain (sorted full ids): the words of every phrase table and
    of the captions and composed texts of `specs`."""
    words = set()
    phrases = list(SUBJECTS) + [s for v in SUBJECTS_SEX.values() for s in v] + [t for p in PROMPT_PAIRS.values() for t in p]
    for c in CONCEPTS:
        phrases += list(c.present) + [p for _, p in c.absent] + ([c.adjective] if c.adjective else [])
    phrases += ["with without no not wearing and or , smiling bald"]
    for p in phrases:
        words.update(p.split())
    rng = np.random.default_rng(rng_seed)
    vals = np.stack([concept_values(s) for s in specs[:samples]])
    texts, negs, _, _ = sample_texts(rng, vals, specs[:samples], 0.5)
    for t in texts + negs:
        words.update(t.split())
    ids = {SOT, EOT}
    for w in words:
        ids.update(tokenizer(w, add_special_tokens=False)["input_ids"])
    return np.array(sorted(ids), np.int64)


# ---------------------------------------------------------------------------------------------
# State and the training step.

@flax.struct.dataclass
class TrainState:
    step: Array
    params: Any     # the CLIP's (with the compact token table)
    aux: Any        # the auxiliary linear head on the image embedding (training only; see aux_weight)
    opt: Any


def optimizer(cfg: ClipTrainConfig) -> optax.GradientTransformation:
    """AdamW over {'clip': params, 'aux': head}, warm-up then cosine decay; the text tower's rate is
    `text_lr_scale` times the rest; weight decay on kernels and embeddings only."""
    warmup = min(cfg.warmup, max(cfg.steps // 4, 1))

    def adamw(scale):
        schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr * scale, warmup, max(cfg.steps, warmup + 1),
                                                      cfg.lr * scale * 0.02)
        return optax.adamw(schedule, b2=0.98, weight_decay=cfg.weight_decay,
                           mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params))

    def labels(tree):
        text = {"text_model", "text_projection"}
        return {"clip": {k: jax.tree.map(lambda _: "text" if k in text else "rest", v) for k, v in tree["clip"].items()},
                "aux": jax.tree.map(lambda _: "rest", tree["aux"])}

    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.multi_transform({"text": adamw(cfg.text_lr_scale), "rest": adamw(1.0)}, labels))


def init_state(mcfg: CLIPConfig, cfg: ClipTrainConfig, *, key: Array) -> TrainState:
    from jax_inpaint.models.clip import init_params

    params = init_params(mcfg, key=key)
    aux = {"kernel": jnp.zeros((mcfg.projection_dim, len(CONCEPTS))), "bias": jnp.zeros((len(CONCEPTS),))}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, aux=aux,
                      opt=optimizer(cfg).init({"clip": params, "aux": aux}))


def make_train_step(mcfg: CLIPConfig, cfg: ClipTrainConfig, rates: np.ndarray):
    """The jitted `train_step(state, images uint8 [N,H,W,3], ids [2N, L], positives bool [N, 2N],
    concept ids [2C, Lc] (the with / without text of each concept, interleaved), values bool [N, C], key)`.
    rates [C]: how often each fact holds in the training set (rare facts' positives weigh more)."""
    from jax_inpaint.demo.train_classifier import augment

    module = CLIPModule(mcfg)
    tx = optimizer(cfg)
    big = -1e9
    pos_weight = jnp.asarray(np.minimum((1 - rates) / np.maximum(rates, 1e-6), cfg.max_pos_weight).clip(1.0),
                             jnp.float32)

    def fact_loss(logits, values):
        """Binary cross-entropy of the facts, positives of rare facts weighted up."""
        w = jnp.where(values, pos_weight, 1.0)
        return jnp.mean(w * optax.sigmoid_binary_cross_entropy(logits, values.astype(jnp.float32)))

    def unit(v):
        return v / jnp.linalg.norm(v, axis=-1, keepdims=True)

    def loss_fn(trained, x, ids, pos, concept_ids, values):
        params = trained["clip"]
        raw = module.apply({"params": params}, x, method=CLIPModule.image_features)
        img = unit(raw)
        txt = unit(module.apply({"params": params}, ids, method=CLIPModule.text_features))
        ctxt = unit(module.apply({"params": params}, concept_ids, method=CLIPModule.text_features))
        scale = jnp.exp(jnp.minimum(params["logit_scale"], np.log(100.0)))
        logits = scale * img @ txt.T                                  # [N, 2N]
        i2t = jax.nn.logsumexp(jnp.where(pos, logits, big), 1) - jax.nn.logsumexp(logits, 1)
        lt, pt = logits.T, pos.T                                      # [2N, N]
        has = pt.any(1)
        t2i = jax.nn.logsumexp(jnp.where(pt, lt, big), 1) - jax.nn.logsumexp(lt, 1)
        t2i = jnp.sum(jnp.where(has, t2i, 0.0)) / jnp.maximum(has.sum(), 1)
        # Per concept: with (even rows of ctxt) against without (odd rows), the true one to win.
        c = scale * img @ ctxt.T                                      # [N, 2C]
        margin = c[:, 0::2] - c[:, 1::2]                              # [N, C]: log-odds of "with"
        concept = fact_loss(margin, values)
        contrastive = -(jnp.mean(i2t) + t2i) / 2
        # The auxiliary head: the facts, linearly from the image embedding (a direct signal for the vision tower).
        aux = fact_loss(raw @ trained["aux"]["kernel"] + trained["aux"]["bias"], values)
        # The share of images whose own text beats its hard negative, and of right with/without choices.
        n = img.shape[0]
        own, neg = jnp.diagonal(logits[:, :n]), jnp.diagonal(logits[:, n:])
        return contrastive + cfg.concept_weight * concept + cfg.aux_weight * aux, {
            "contrastive": contrastive, "concept": concept, "aux": aux, "hard_acc": jnp.mean(own > neg),
            "concept_acc": jnp.mean((margin > 0) == values), "scale": scale}

    def train_step(state: TrainState, imgs, ids, pos, concept_ids, values, key):
        x = augment(key, imgs.astype(jnp.float32) / 127.5 - 1.0)
        trained = {"clip": state.params, "aux": state.aux}
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(trained, x, ids, pos, concept_ids, values)
        updates, opt = tx.update(grads, state.opt, trained)
        trained = optax.apply_updates(trained, updates)
        return TrainState(step=state.step + 1, params=trained["clip"], aux=trained["aux"], opt=opt), \
            {"loss": loss, **metrics}

    return jax.jit(train_step, donate_argnums=0)


# ---------------------------------------------------------------------------------------------
# Data.

class Data:
    """The training renders (uint8), their specs and concept values, and the text machinery."""

    def __init__(self, cfg: ClipTrainConfig, *, cache_dir: str | os.PathLike, tokenizer_dir: str):
        from jax_inpaint.demo import faces
        from jax_inpaint.demo.train_gan import face_data
        from jax_inpaint.models.clip import load_tokenizer

        self.images, _ = face_data(cfg.num_images, size=cfg.image_size, seed=cfg.data_seed, cache_dir=cache_dir)
        self.specs = [faces.sample_spec(faces.face_rng(cfg.data_seed, i)) for i in range(cfg.num_images)]
        self.values = np.stack([concept_values(s) for s in self.specs])
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.vocab = training_vocabulary(self.tokenizer, self.specs)
        self.tokens = Tokens(self.tokenizer, self.vocab, cfg.context_length)
        self.cfg = cfg
        rng = np.random.default_rng(12345)
        sample, negs, _, _ = sample_texts(rng, self.values[:300], self.specs[:300], 0.3)
        self.tokens.check(sample + negs + [t for pair in PROMPT_PAIRS.values() for t in pair])

    def batch(self, step: int) -> tuple[np.ndarray, ...]:
        """The arguments of one train_step (but the state and key), the same on a resume: images uint8
        [N,R,R,3], compact ids [2N, L], positives [N, 2N], concept ids [2C, Lc], concept values [N, C]."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.integers(0, len(self.images), cfg.batch)
        texts, negs, stated, claimed = sample_texts(rng, self.values[idx], [self.specs[i] for i in idx],
                                                    cfg.caption_rate)
        ids = self.tokens(texts + negs)
        return (self.images[idx], ids, agreement(self.values[idx], stated, claimed),
                self.concept_ids(rng), self.values[idx])

    def concept_ids(self, rng: np.random.Generator) -> np.ndarray:
        """Compact ids [2C, concept_context]: for each concept its with- and without-text, one phrasing
        (the subject is "a face" half the time, as the demo's prompts are written)."""
        texts = []
        for ci in range(len(CONCEPTS)):
            choices = {"subject": 0 if rng.random() < 0.5 else int(rng.integers(1 << 16)),
                       "adjective": bool(rng.random() < 0.5), "order": 0, "conj": "and",
                       "phrase": rng.integers(1 << 16, size=len(CONCEPTS))}
            texts += [compose([(ci, True)], choices), compose([(ci, False)], choices)]
        return self.tokens(texts, self.cfg.concept_context)


# ---------------------------------------------------------------------------------------------
# The training loop.

def read_run(out: str) -> dict:
    path = os.path.join(os.fspath(out), "train_config.json")
    if not os.path.isfile(path):
        raise InputError(f"{out}: not a demo CLIP training folder (no train_config.json)")
    with open(path) as f:
        return json.load(f)


def _restore(manager, mcfg: CLIPConfig, cfg: ClipTrainConfig, step: int) -> TrainState:
    import orbax.checkpoint as ocp
    abstract = jax.eval_shape(lambda: init_state(mcfg, cfg, key=jax.random.key(0)))
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def train(cfg: ClipTrainConfig, out: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
          tokenizer_dir: str | None = None, max_minutes: float | None = None, progress: bool = True) -> dict:
    """Train (or resume) the demo CLIP in `out` until `cfg.steps` steps or `max_minutes` have passed.

    `out` receives train_config.json (the config, the training vocabulary, time spent), checkpoints/
    (orbax, the newest two) and log.jsonl. A folder started with another config refuses to resume.
    Returns {'step', 'seconds'}."""
    from tqdm.auto import tqdm


    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    cfg_path = os.path.join(out, "train_config.json")
    if os.path.isfile(cfg_path):
        info = read_run(out)
        old = ClipTrainConfig.from_dict(info["config"]).to_dict()
        diff = sorted(k for k, v in cfg.to_dict().items() if k not in ("steps", "checkpoint_every") and old[k] != v)
        if diff:
            raise InputError(f"{out} holds a run with other settings ({', '.join(diff)}): use a new folder")
        if old["steps"] != cfg.steps and int(info.get("step", 0)) > 0:
            raise InputError(f"{out} holds a run of {old['steps']} steps (its learning-rate schedule): "
                             "resume it with the same --steps, or use a new folder")
    else:
        info = {"seconds": 0.0}
    tokenizer_dir = tokenizer_dir or default_tokenizer_dir()
    data = Data(cfg, cache_dir=cache_dir or os.path.join(out, "data"), tokenizer_dir=tokenizer_dir)
    if "vocab" in info and list(info["vocab"]) != data.vocab.tolist():
        raise InputError(f"{out}: its training vocabulary differs from this version's texts: use a new folder")
    info.update(config=cfg.to_dict(), vocab=data.vocab.tolist(), tokenizer=os.path.abspath(tokenizer_dir))
    mcfg = model_config(cfg, len(data.vocab), len(data.vocab) - 1)
    manager = checkpoint_manager(out)
    latest = manager.latest_step()
    state = init_state(mcfg, cfg, key=jax.random.key(cfg.seed)) if latest is None else \
        _restore(manager, mcfg, cfg, latest)
    start = int(state.step)
    step_fn = make_train_step(mcfg, cfg, data.values.mean(0))
    key = jax.random.key(cfg.seed + 1)
    log = open(os.path.join(out, "log.jsonl"), "a")
    bar = tqdm(total=cfg.steps, initial=start, desc="demo CLIP", unit="step", dynamic_ncols=True,
               disable=not progress)
    t0, seconds0 = time.time(), float(info.get("seconds", 0.0))

    def save_info():
        info.update(step=int(state.step), seconds=seconds0 + time.time() - t0, machine=machine_description())
        files.write_json(cfg_path, info)

    save_info()
    avg = None
    try:
        step = start
        while step < cfg.steps:
            if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
                break
            state, m = step_fn(state, *data.batch(step), jax.random.fold_in(key, step))
            step += 1
            if step % 10 == 0 or step == cfg.steps:
                m = {k: float(v) for k, v in m.items()}
                if not np.isfinite(m["loss"]):
                    raise FloatingPointError(f"step {step}: non-finite loss {m}")
                avg = m if avg is None else {k: 0.9 * avg[k] + 0.1 * v for k, v in m.items()}
                bar.set_postfix(loss=f"{avg['loss']:.3f}", hard=f"{avg['hard_acc']:.3f}",
                                concept=f"{avg['concept_acc']:.3f}", scale=f"{m['scale']:.1f}")
                log.write(json.dumps({"step": step, "t": round(seconds0 + time.time() - t0, 1), **m}) + "\n")
                log.flush()
            bar.update(1)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(manager, step, state, save_info)
    finally:
        bar.close()
        log.close()
        close_run(manager, state, save_info)
    return {"step": int(state.step), "seconds": seconds0 + time.time() - t0}


# ---------------------------------------------------------------------------------------------
# Measuring and exporting.

def full_params(params: dict, vocab: np.ndarray, dtype=np.float32) -> dict:
    """Training params (compact token table) -> the model's (CLIP's 49408 tokens, zero where unseen)."""
    params = jax.tree.map(np.asarray, jax.device_get(params))
    out = jax.tree.map(lambda a: a.astype(dtype), params)
    emb = params["text_model"]["embeddings"]["token_embedding"]["embedding"]
    full = np.zeros((VOCAB_SIZE, emb.shape[1]), dtype)
    full[np.asarray(vocab)] = emb
    out["text_model"]["embeddings"]["token_embedding"]["embedding"] = full
    return out


def with_without_accuracy(clip: CLIP, images_u8: np.ndarray, labels: np.ndarray, attributes: Sequence[str],
                          batch: int = 250) -> dict[str, dict[str, float]]:
    """For each attribute (a key of PROMPT_PAIRS; `labels` [N, len(attributes)] bool): how often the CLIP
    scores the true one of "a face with X" / "a face without X" higher. Returns per attribute
    {'accuracy', 'balanced' (the mean of the accuracies on faces with and without it), 'positives'}."""
    from jax_inpaint.inversion.inpainter import cached_jit

    texts = [t for a in attributes for t in PROMPT_PAIRS[a]]
    emb = clip.encode_text(clip.params, clip.tokenize(texts))
    sim = cached_jit(("clip-similarity", clip.config), clip.similarity)   # (CLIP.similarity; not "clip-sim")
    s = np.concatenate([np.asarray(sim(clip.params, jnp.asarray(images_u8[i:i + batch], jnp.float32) / 127.5 - 1.0,
                                       emb)) for i in range(0, len(images_u8), batch)])
    out = {}
    for j, a in enumerate(attributes):
        says = s[:, 2 * j] > s[:, 2 * j + 1]
        truth = np.asarray(labels[:, j], bool)
        correct = says == truth
        parts = [correct[truth].mean() if truth.any() else np.nan, correct[~truth].mean() if (~truth).any() else np.nan]
        out[a] = {"accuracy": float(correct.mean()), "balanced": float(np.nanmean(parts)),
                  "positives": int(truth.sum())}
    return out


def heldout_accuracy(clip: CLIP, n: int, seed: int, size: int = 32) -> dict[str, dict[str, float]]:
    """`with_without_accuracy` on the first n renders of the data set `seed` (not a training seed)."""
    from jax_inpaint.demo import faces, quality

    imgs, labels = quality.held_out_faces(n, seed=seed, size=size)
    return with_without_accuracy(clip, imgs, labels, faces.ATTRIBUTES)


def export(out: str | os.PathLike, dest: str | os.PathLike, *, overwrite: bool = False,
           script: str = "bin/train_demo_clip.py", measure: bool = True) -> str:
    """Write the newest checkpoint of a training folder as a 'clip' model folder: float16 weights, the full
    token table, the tokenizer files, and (measure) the held-out with/without accuracy in model.json."""
    from convert_weights.clip import _tokenizer_files
    from convert_weights.hf import write_folder
    from jax_inpaint.models import folders
    from jax_inpaint.models.clip import KIND, TOKENIZER_DIR, load_tokenizer

    out = os.fspath(out)
    info = read_run(out)
    tok_dir = info["tokenizer"]
    folders.check_destination(dest, overwrite=overwrite, keep=[tok_dir])  # before the slow part
    cfg = ClipTrainConfig.from_dict(info["config"])
    vocab = np.asarray(info["vocab"], np.int64)
    mcfg = model_config(cfg, len(vocab), len(vocab) - 1)
    manager = checkpoint_manager(out)
    latest = manager.latest_step()
    if latest is None:
        raise InputError(f"{out}: no checkpoint to export")
    state = _restore(manager, mcfg, cfg, latest)
    manager.close()
    shipped = full_params(state.params, vocab, np.float16)
    full_cfg = model_config(cfg)
    source = {"trained_by": script, "steps": int(state.step), "images_seen": int(state.step) * cfg.batch,
              "wall_seconds": round(float(info.get("seconds", 0.0))), "machine": info.get("machine", ""),
              "train_config": cfg.to_dict(), "weights": "float16",
              "vocabulary": f"{len(vocab)} tokens of the training texts; the other token embeddings are zero",
              "data": f"jax_inpaint.demo.faces.render_dataset({cfg.num_images}, seed={cfg.data_seed}, "
                      f"size={cfg.image_size}) with composed texts (jax_inpaint.demo.train_clip), augmented "
                      "(flips, 1-pixel shifts, blur, noise)"}
    if measure:
        clip = CLIP(full_cfg, jax.tree.map(lambda a: np.asarray(a, np.float32), shipped),
                    tokenizer=load_tokenizer(tok_dir))
        acc = heldout_accuracy(clip, cfg.heldout_images, cfg.heldout_seed, cfg.image_size)
        source["heldout_with_without"] = {"renders": f"render_dataset({cfg.heldout_images}, seed={cfg.heldout_seed})",
                                          "prompts": "a face with X / a face without X (PROMPT_PAIRS)",
                                          **{k: round(v["accuracy"], 4) for k, v in acc.items()}}
    extra = {os.path.join(TOKENIZER_DIR, name): os.path.join(tok_dir, name) for name in _tokenizer_files(tok_dir)}
    return write_folder(dest, kind=KIND, config=full_cfg.to_dict(), params=shipped, source=source,
                        overwrite=overwrite, extra_files=extra, keep=[tok_dir])
