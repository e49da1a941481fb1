"""Reward model: a Hugging Face backbone + named scalar heads, with a small scoring API.

``load_reward_model(path).score(prompt, responses)`` returns normalised rewards (mean 0, std 1
on the reference set recorded at training time); ``preference_prob(prompt, a, b)`` returns
the calibrated ``σ((r_a - r_b) / T)``. :func:`load_reward_model` is the one loader: it returns
a :class:`RewardModel` or a :class:`RewardEnsemble`, whichever the folder holds, and both
offer the same scoring API (:class:`Scorer`), so every caller accepts ensembles. Several heads (e.g. helpfulness, harmlessness) are
combined as ``Σ_h w_h · s_h``; a head scoring below its guardrail threshold vetoes the
response (its combined score becomes :data:`VETO`).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from prefline.base.distributed import place
from prefline.base.errors import PreflineError
from prefline.base.precision import autocast_context, resolve_precision
from prefline.formats.examples import Messages, as_messages
from prefline.models.backbone import InputBuilder, load_backbone, pool, resolve_backbone
from prefline.models.buckets import Buckets, make_buckets
from prefline.models.export import HF_DIR, export_reward
from prefline.models.heads import HeadSpec
from prefline.models.hub import make_adapter_portable, resolve_adapter_base
from prefline.models.packing import Packed, pack, pool_packed
from prefline.models.personal import PersonalHead, PersonalSpec
from prefline.models.segment_attention import segments_on

CARD = "model_card.json"
SINGLE_FORMAT = "prefline-reward/1"
ENSEMBLE_FORMAT = "prefline-reward-ensemble/1"
PACKABLE = {"bert", "roberta", "xlm-roberta", "electra", "llama", "mistral", "qwen2", "qwen3"}
VERY_LARGE_LENGTH = int(1e30)
VETO = -100.0
"""Normalised score given to a response that a guardrail head vetoes."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the architecture; stored in the model card."""

    backbone: str
    kind: str = "encoder"
    pooling: str = "mean"
    """mean | cls | last | pooler (the backbone's pooler on [CLS], as a stock BERT classifier)."""
    max_length: int = 512
    head_dropout: float = 0.1
    heads: HeadSpec = field(default_factory=HeadSpec)
    lora: dict[str, Any] | None = None
    """peft LoRA settings (r, alpha, dropout) or None for full fine-tuning."""
    personal: PersonalSpec | None = None
    """Per-user/segment conditioning (:mod:`prefline.models.personal`); None: one reward."""


class PairwiseScoring:
    """``score`` and ``preference_prob`` for anything with ``score_items`` and a temperature."""

    temperature: float

    def score_items(self, items: Sequence[tuple[Messages | str, str]]) -> list[float]:
        raise NotImplementedError

    def score(self, prompt: Messages | str, responses: Sequence[str]) -> list[float]:
        """Normalised rewards of ``responses`` to ``prompt`` (all scored in one pass)."""
        return self.score_items([(prompt, r) for r in responses])

    def preference_prob(self, prompt: Messages | str, a: str, b: str) -> float:
        """Calibrated P(a ≻ b) = σ((r_a - r_b) / T)."""
        ra, rb = self.score(prompt, [a, b])
        return 1.0 / (1.0 + math.exp(-(ra - rb) / self.temperature))


class RewardModel(nn.Module, PairwiseScoring):
    """``forward(buckets) -> [N, H]`` raw head scores; scoring helpers on top."""

    weights: Tensor
    backbone: Any

    def __init__(self, backbone: nn.Module, tokenizer: Any, spec: ModelSpec) -> None:
        super().__init__()
        self.backbone, self.tokenizer, self.spec = backbone, tokenizer, spec
        hidden = int(self.backbone.config.hidden_size)
        self.dropout = nn.Dropout(spec.head_dropout)
        self.head = nn.Linear(hidden, len(spec.heads.names))
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(hidden + 1))
        nn.init.zeros_(self.head.bias)
        weights = [float(spec.heads.weights.get(n, 1.0)) for n in spec.heads.names]
        self.register_buffer("weights", torch.tensor(weights), persistent=False)
        self.personal = (PersonalHead(spec.personal, hidden, len(spec.heads.names))
                         if spec.personal else None)
        self.builder = InputBuilder(tokenizer, spec.kind, spec.max_length)
        self.norm_mean, self.norm_std, self.temperature = 0.0, 1.0, 1.0
        self.precision = "auto"
        """Scoring precision (auto | bf16 | fp32): auto autocasts to bf16 where the hardware
        has it, which moves scores by ~1e-2; fp32 gives what an fp32 export computes."""
        self.card: dict[str, Any] = {}
        self.per_segment = True
        """Packed encoder rows attend per prompt/response segment (same results as the 4-D
        mask, without its masked-out work); False: through the mask (kept for comparison)."""

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def create(cls, backbone: str | None = None, *, pooling: str | None = None,
               max_length: int = 512, heads: HeadSpec | None = None,
               lora: dict[str, Any] | None = None, dropout: float | None = None,
               head_dropout: float = 0.1, seed: int = 0,
               train_embeddings: bool = False,
               personal: PersonalSpec | None = None,
               attention_dropout: float | None = 0.0) -> RewardModel:
        """A fresh model on ``backbone`` (default: embedded all-MiniLM-L6-v2).

        The token-embedding table stays frozen unless ``train_embeddings``: it is half of
        MiniLM's parameters, a preference set only touches the rows of the tokens it contains,
        and its dense gradient + AdamW update cost a large share of each step on CPU.

        ``attention_dropout`` (default 0; None: as ``dropout`` or the backbone's own) is the
        dropout on attention probabilities. Off by default, as TRL turns off all dropout:
        with it on, torch cannot use its fused (flash) attention kernel, and the unfused one
        materialises every [heads, W, W] probability matrix of a packed row, which cost more
        time and peak memory than the rest of a MiniLM step.
        """
        name = resolve_backbone(backbone)
        model, tok, kind = load_backbone(name, dropout, attention_dropout=attention_dropout)
        pooling = pooling or ("mean" if kind == "encoder" else "last")
        if pooling not in ("mean", "cls", "last", "pooler"):
            raise PreflineError("pooling must be mean, cls, last or pooler", field="pooling")
        if pooling == "pooler" and getattr(getattr(model, "pooler", None), "dense", None) is None:
            raise PreflineError(f"pooling=pooler needs an encoder with a pooler layer (BERT "
                                f"family); {name!r} has none", field="pooling")
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and max_length > limit:
            max_length = int(limit)  # positions beyond the table would crash the forward
        spec = ModelSpec(name, kind, pooling, max_length, head_dropout, heads or HeadSpec(), lora,
                         personal)
        if not train_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        if lora:
            model = _add_lora(model, lora)
        torch.manual_seed(seed)
        return cls(model, tok, spec)

    # ----- forward ----------------------------------------------------------------------------
    def encode(self, prompt: Messages, responses: Sequence[str]) -> list[tuple[list[int], int]]:
        """Token ids for each response to one prompt; the prompt is tokenised once."""
        p = self.builder.prompt_ids(prompt)
        rs = [self.builder.response_ids(r) for r in responses]
        longest = max((len(r) for r in rs), default=0)
        return [self.builder.build(p, r, longest) for r in rs]

    @property
    def packs(self) -> bool:
        """Whether this backbone takes packed rows (4-D masks + position ids); checked for
        these families, others fall back to length buckets."""
        return getattr(self.backbone.config, "model_type", "") in PACKABLE

    def make_batch(self, encoded: Sequence[tuple[list[int], int]]) -> Packed | Buckets:
        """Packed rows where the backbone supports them, else length buckets."""
        ids, segs = [e[0] for e in encoded], [e[1] for e in encoded]
        pad = int(self.tokenizer.pad_token_id)
        if self.packs:
            # [CLS] would see only the prompt under a shared-prompt mask, so cls-type pooling
            # packs each sequence on its own. Per-segment attention does no work across
            # segments, so every sequence goes into one row (no padding); the masked kernel
            # pays W² per row, so its rows stay as narrow as the widest group.
            return pack(ids, pad, segs, causal=self.spec.kind == "decoder",
                        share=self.spec.pooling not in ("cls", "pooler"),
                        width=sum(len(s) for s in ids) if self.segment_attention else 0)
        return make_buckets(ids, pad, segs)

    @property
    def segment_attention(self) -> bool:
        """Whether packed rows attend per segment (:mod:`prefline.models.segment_attention`)
        instead of through a 4-D mask: bidirectional encoders, unless ``per_segment`` is off."""
        return self.per_segment and self.packs and self.spec.kind == "encoder"

    @property
    def isolates_prompt(self) -> bool:
        """Whether prompt tokens attend to the prompt only (shared-prompt packing): what a
        stock bidirectional encoder does not do, so an export must reproduce it."""
        return (self.packs and self.spec.kind == "encoder"
                and self.spec.pooling not in ("cls", "pooler"))

    def forward(self, batch: Packed | Buckets, groups: Tensor | None = None) -> Tensor:
        """Raw head scores ``[N, H]`` (fp32) in the order the sequences were given;
        ``groups`` ``[N]``: each sequence's group index for a personalised model (None: the
        fallback)."""
        return self._head(self.features(batch), groups)

    def features(self, batch: Packed | Buckets) -> Tensor:
        """Pooled vectors ``[N, D]`` the heads read, in the order the sequences were given."""
        use_types = self.spec.kind == "encoder" and _takes_token_types(self.backbone)
        how = "cls" if self.spec.pooling == "pooler" else self.spec.pooling
        if isinstance(batch, Packed):
            packed: dict[str, Any] = {"input_ids": batch.input_ids,
                                      "position_ids": batch.position_ids}
            if use_types:
                packed["token_type_ids"] = batch.token_type_ids
            if self.segment_attention:
                with segments_on(self.backbone):
                    hidden = self.backbone(**packed, prefline_spans=batch.spans).last_hidden_state
            else:
                hidden = self.backbone(**packed, attention_mask=batch.attention_mask).last_hidden_state
            return self._pooler(pool_packed(hidden, batch, how))
        out = None
        for b in batch.buckets:
            kwargs: dict[str, Tensor] = {"input_ids": b.input_ids, "attention_mask": b.attention_mask}
            if use_types:
                kwargs["token_type_ids"] = b.token_type_ids
            hidden = self.backbone(**kwargs).last_hidden_state
            pooled = self._pooler(pool(hidden, b.attention_mask, how))
            if out is None:
                out = pooled.new_zeros((batch.n, pooled.size(-1)))
            out = out.index_copy(0, b.index, pooled)
        assert out is not None, "empty batch"
        return out

    def _pooler(self, first: Tensor) -> Tensor:
        """pooling=pooler: the backbone's own pooler (dense + tanh) on the [CLS] vectors
        ``[N, H]``, so a stock ``BertForSequenceClassification`` computes the same score."""
        if self.spec.pooling != "pooler":
            return first
        base = self.backbone.get_base_model() if self.spec.lora else self.backbone
        return base.pooler(first.unsqueeze(1))  # type: ignore[no-any-return]

    def _head(self, pooled: Tensor, groups: Tensor | None = None) -> Tensor:
        # The head runs in fp32 even under bf16 autocast: bf16 keeps ~3 significant
        # digits, enough for hidden states but too coarse to order close rewards.
        with torch.autocast(pooled.device.type, enabled=False):
            h = self.dropout(pooled.float())
            base = self.head(h)
            if self.personal is None:
                return base  # type: ignore[no-any-return]
            if groups is None:
                groups = torch.zeros(h.shape[:-1], dtype=torch.long)
            return self.personal(h, base, groups)  # type: ignore[no-any-return]

    def combine(self, heads: Tensor) -> Tensor:
        """Weighted sum of head scores ``[N, H] -> [N]`` (raw, not normalised)."""
        # elementwise, not matmul: autocast would run a matmul in bf16
        return (heads * self.weights.to(heads.dtype)).sum(-1)

    # ----- scoring API ------------------------------------------------------------------------
    @torch.no_grad()
    def head_scores(self, items: Sequence[tuple[Messages | str, str]],
                    groups: Sequence[str | None] | None = None) -> Tensor:
        """Raw ``[N, H]`` scores of (prompt, response) items, in bucketed passes; ``groups``:
        each item's value of the personalised key (None or unseen: the fallback)."""
        self.eval()
        encoded: list[tuple[list[int], int]] = []
        for prompt, response in items:
            encoded.extend(self.encode(as_messages(prompt), [response]))
        index = (self.spec.personal.index(groups)
                 if self.spec.personal is not None and groups is not None else None)
        with autocast_context(resolve_precision(self.precision)):
            return self(self.make_batch(encoded), index)

    def normalised(self, heads: Tensor) -> Tensor:
        """Combined, normalised scores ``[N]`` with guardrail vetoes applied."""
        z = (self.combine(heads) - self.norm_mean) / self.norm_std
        for i, name in enumerate(self.spec.heads.names):
            t = self.spec.heads.thresholds.get(name)
            if t is not None:
                z = torch.where(heads[:, i] < t, torch.full_like(z, VETO), z)
        return z

    def score_items(self, items: Sequence[tuple[Messages | str, str]],
                    groups: Sequence[str | None] | None = None) -> list[float]:
        if not items:
            return []
        return [float(x) for x in self.normalised(self.head_scores(items, groups))]

    def score(self, prompt: Messages | str, responses: Sequence[str], *,
              segment: Mapping[str, str] | None = None, user: str | None = None) -> list[float]:
        """Normalised rewards of ``responses`` for a user of ``segment`` (a personalised model
        reads its key from them; without it, or for a value unseen in training, the shared
        fallback scores)."""
        value = self.spec.personal.value_of(segment, user) if self.spec.personal else None
        return self.score_items([(prompt, r) for r in responses], [value] * len(responses))

    # ----- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path, card: dict[str, Any] | None = None,
             export: bool = True) -> Path:
        """Weights as safetensors + ``model_card.json``; LoRA saves only adapter + head.

        ``export``: also write ``hf/``, a Hugging Face sequence classifier giving the same
        scores (:mod:`prefline.models.export`); the card's ``hf_export`` says what it is, or
        why this model has none. A full fine-tune keeps its backbone only there (one copy of
        the weights); without an export it goes to ``backbone/``.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        why = "not asked for"
        if self.spec.lora:
            self.backbone.save_pretrained(path / "adapter")
            # peft records the folder the base was loaded from (for the default, a path
            # inside the virtualenv); an embedded base is named by its Hub id instead.
            extra["base_model"] = make_adapter_portable(path / "adapter", self.spec.backbone)
        heads = {k: v.detach().contiguous() for k, v in self.head.state_dict().items()}
        if self.personal is not None:
            heads.update({f"personal.{k}": v.detach().contiguous()
                          for k, v in self.personal.state_dict().items()})
        save_file(heads, str(path / "head.safetensors"))
        if self.personal is not None:  # a stock classifier has no input for the segment
            export = False
            why = "personalised: a stock classifier cannot take the segment"
        extra["hf_export"] = export_reward(self, path) if export else {"path": None,
                                                                       "why": why}
        if not self.spec.lora:
            shutil.rmtree(path / "backbone", ignore_errors=True)  # no stale copy to prefer
            if not extra["hf_export"]["path"]:
                self.backbone.save_pretrained(path / "backbone")
                self.tokenizer.save_pretrained(path / "backbone")
        full = {**self.card, **(card or {}), **extra, "format": SINGLE_FORMAT,
                "spec": asdict(self.spec), "backbone": self.spec.backbone,
                "normalisation": {"mean": self.norm_mean, "std": self.norm_std},
                "temperature": self.temperature,
                "truncation": dict(self.builder.counts)}
        (path / CARD).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        self.card = full
        return path


class Scorer(Protocol):
    """What evaluators, judges and policy evaluation need: a reward model or an ensemble."""

    temperature: float
    card: dict[str, Any]

    def score_items(self, items: Sequence[tuple[Messages | str, str]]) -> list[float]: ...

    def score(self, prompt: Messages | str, responses: Sequence[str]) -> list[float]: ...

    def preference_prob(self, prompt: Messages | str, a: str, b: str) -> float: ...


class RewardEnsemble(PairwiseScoring):
    """K members (seeds or bootstrap resamples); each member's scores are already
    normalised and the ensemble averages them. The std across members is an uncertainty
    signal: a policy that pushes the reward where members disagree is usually exploiting it."""

    def __init__(self, members: list[RewardModel], temperature: float = 1.0,
                 card: dict[str, Any] | None = None) -> None:
        if not members:
            raise PreflineError("an ensemble needs at least one member")
        self.members, self.temperature, self.card = members, temperature, dict(card or {})

    def member_scores(self, items: Sequence[tuple[Messages | str, str]]) -> np.ndarray:
        """``[K, N]`` normalised scores of every member."""
        return np.array([m.score_items(items) for m in self.members], dtype=np.float64)

    def score_items(self, items: Sequence[tuple[Messages | str, str]]) -> list[float]:
        return [float(x) for x in self.member_scores(items).mean(0)] if items else []

    def score_with_std(self, prompt: Messages | str,
                       responses: Sequence[str]) -> tuple[list[float], list[float]]:
        """(mean, std across members) per response."""
        s = self.member_scores([(prompt, r) for r in responses])
        return s.mean(0).tolist(), s.std(0).tolist()

    def save(self, path: str | Path, card: dict[str, Any] | None = None) -> Path:
        """Members under ``member-k/`` + an ensemble ``model_card.json``."""
        path = Path(path)
        names = []
        for k, m in enumerate(self.members):
            name = f"member-{k}"
            m.save(path / name)
            names.append(name)
        first = self.members[0].card
        full = {**self.card, **(card or {}), "format": ENSEMBLE_FORMAT, "members": names,
                "temperature": self.temperature, "backbone": first.get("backbone"),
                "spec": first.get("spec"),
                # one classifier per member: the ensemble's score is the mean of their label 0
                "hf_export": {"members": [f"{n}/{m.card['hf_export'].get('path')}"
                                          if m.card["hf_export"].get("path") else None
                                          for n, m in zip(names, self.members, strict=True)],
                              "combine": "mean of each member's label 0 (reward)"}}
        (path / CARD).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        self.card = full
        return path


def place_reward_model(model: RewardModel | RewardEnsemble,
                       device: torch.device) -> RewardModel | RewardEnsemble:
    """Every member of ``model`` on ``device`` (inputs follow off the CPU; see
    :func:`prefline.base.distributed.place`). On the CPU nothing moves."""
    for m in model.members if isinstance(model, RewardEnsemble) else [model]:
        place(m, device)
    return model


def load_reward_model(path: str | Path,
                      precision: str = "auto") -> RewardModel | RewardEnsemble:
    """The saved reward model or ensemble in ``path`` (whichever it holds); PreflineError
    naming the folder when it holds neither. ``precision``: see :attr:`RewardModel.precision`
    (fp32 to reproduce the ``hf/`` export's scores exactly)."""
    path = Path(path)
    card = read_card(path)
    if card.get("format") == ENSEMBLE_FORMAT:
        members = [_load_single(path / m) for m in card["members"]]
        for m in members:
            m.precision = precision
        return RewardEnsemble(members, float(card.get("temperature", 1.0)), card)
    model = _load_single(path, card)
    model.precision = precision
    return model


def _load_single(path: Path, card: dict[str, Any] | None = None) -> RewardModel:
    from safetensors.torch import load_file

    card = read_card(path) if card is None else card
    if card.get("format") != SINGLE_FORMAT:
        raise PreflineError(f"{CARD} has format {card.get('format')!r}, expected "
                            f"{SINGLE_FORMAT} or {ENSEMBLE_FORMAT}", path=str(path))
    raw = dict(card["spec"])
    raw["heads"] = HeadSpec(**{**raw["heads"], "names": tuple(raw["heads"]["names"])})
    if raw.get("personal"):
        raw["personal"] = PersonalSpec(**{**raw["personal"],
                                          "groups": tuple(raw["personal"]["groups"])})
    spec = ModelSpec(**raw)
    if spec.lora:
        from peft import PeftModel

        base_name = spec.backbone
        if not Path(base_name).exists():  # moved from where it trained: the adapter's base
            base_name = resolve_adapter_base(path / "adapter", card) or resolve_backbone(None)
        base, tok, _ = load_backbone(base_name)
        backbone = PeftModel.from_pretrained(base, str(path / "adapter"))
    else:  # hf/ holds the backbone unless the model had no export (or predates exports)
        folder = path / "backbone" if (path / "backbone").is_dir() else path / HF_DIR
        backbone, tok, _ = load_backbone(str(folder), strict=folder.name == HF_DIR)
        if folder.name == HF_DIR:
            # the export's tokenizer carries max_length for other tools; prefline cuts
            # inputs itself (InputBuilder) and would only get warnings from it
            tok.model_max_length = VERY_LARGE_LENGTH
    model = RewardModel(backbone, tok, spec)
    weights = load_file(str(path / "head.safetensors"))
    model.head.load_state_dict({k: v for k, v in weights.items()
                                if not k.startswith("personal.")})
    if model.personal is not None:
        model.personal.load_state_dict({k[len("personal."):]: v for k, v in weights.items()
                                        if k.startswith("personal.")})
    model.norm_mean = float(card["normalisation"]["mean"])
    model.norm_std = float(card["normalisation"]["std"])
    model.temperature = float(card["temperature"])
    model.card = card
    return model.eval()


def read_card(path: Path) -> dict[str, Any]:
    """The parsed ``model_card.json`` of a saved model; PreflineError when absent/invalid."""
    try:
        return dict(json.loads((path / CARD).read_text()))
    except FileNotFoundError:
        raise PreflineError(f"no {CARD} here: not a saved reward model", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise PreflineError(f"{CARD} is not valid JSON ({exc.msg})", path=str(path)) from None


def _takes_token_types(backbone: nn.Module) -> bool:
    return int(getattr(getattr(backbone, "config", None), "type_vocab_size", 0) or 0) > 1


def _add_lora(model: nn.Module, lora: dict[str, Any]) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                     lora_dropout=float(lora.get("dropout", 0.05)),
                     target_modules=lora.get("target_modules", "all-linear"))
    return get_peft_model(model, cfg)  # type: ignore[arg-type]
