"""Settings of the reward-model stage (torch-free, so the CLI and the demo's config can
derive options without loading models; the stage is :func:`prefline.train.reward.run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from prefline.base.errors import PreflineError
from prefline.base.privacy import DEFAULT_MIN_GROUP_SIZE, check_k
from prefline.models.heads import HeadSpec
from prefline.train.lengths import check_max_length
from prefline.train.train_config import TrainConfig


def _reward_engine_defaults() -> TrainConfig:
    # Where reward training departs from the engine's defaults: a pretrained encoder needs
    # a little decay and two passes, and early stopping guards the second one.
    return TrainConfig(lr=5e-5, weight_decay=0.01, epochs=2, early_stopping_patience=2)


@dataclass(frozen=True)
class RewardConfig:
    """Everything ``prefline train reward`` accepts."""

    snapshot: str | None = None
    """Snapshot id, name or content-hash prefix to train on: its train split (val is carved
    from it); its test split is the held-out set."""
    data: str | None = None
    """A pairs/rankings/ratings file (any format `prefline import` reads), instead of
    snapshot; test_fraction of its prompts is held out as its test split."""
    model: str | None = None
    """Backbone: Hugging Face id or local folder; none: the embedded all-MiniLM-L6-v2."""
    pooling: Literal["mean", "cls", "last", "pooler"] | None = None
    """How a sequence becomes one vector; none: mean for encoders, last for decoders. pooler
    (BERT-family encoders): the backbone's pooler on [CLS], so the model exports as a stock
    BertForSequenceClassification (no remote code; see docs/runs.md)."""
    max_length: int = 512
    """Prompt + response tokens (at least 16); the prompt is cut from the left to fit. A
    budget that cuts both prompt and response of every example is refused."""
    heads: tuple[str, ...] = ("reward",)
    """Named reward heads, e.g. helpfulness,harmlessness; pairs with a criterion train its
    head, ratings train the head of the same name (one head: ratings of any criterion)."""
    head_weights: dict[str, float] = field(default_factory=dict)
    """Weight of each head in the combined reward (JSON object; missing heads weigh 1)."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Guardrails: a head scoring below its threshold (raw units) vetoes the response."""
    lora: bool = False
    """Train LoRA adapters on the backbone instead of all its weights."""
    lora_r: int = 8
    """LoRA rank (with lora)."""
    lora_alpha: int = 16
    """LoRA scaling alpha (with lora)."""
    dropout: float | None = None
    """Backbone dropout override; none: the backbone's own."""
    attention_dropout: float | None = 0.0
    """Dropout on the backbone's attention probabilities (none: as dropout). Off by default,
    as in TRL: with it on, torch cannot use its fused attention kernel (slower, more memory)."""
    train_embeddings: bool = False
    """Also train the token-embedding table (frozen by default: half of MiniLM's weights,
    and a preference set touches few of its rows)."""
    head_dropout: float = 0.1
    """Dropout before the reward heads."""
    tie_loss: Literal["davidson", "rao_kupper"] = "davidson"
    """Likelihood of a tie between two responses."""
    label_smoothing: float = 0.0
    """Bradley-Terry label smoothing (the assumed share of flipped labels), in [0, 0.5)."""
    use_margin: bool = False
    """Use each pair's strength as the Bradley-Terry margin."""
    center_coef: float | None = None
    """Weight of a penalty on the mean reward, keeping rewards centred near 0."""
    val_fraction: float = 0.1
    """Share of the training prompts carved out as the val split (early stopping and the
    temperature), by prefline.base.splits.carve as in policy training."""
    test_fraction: float = 0.1
    """With data: share of the file's prompts held out as its test split (the rule a
    snapshot uses). A snapshot's test split was fixed when it was made."""
    ensemble: int = 1
    """Number of ensemble members (their score spread is an uncertainty signal)."""
    ensemble_mode: Literal["seed", "bootstrap"] = "seed"
    """seed: members differ by seed; bootstrap: each also trains on a resample of the data."""
    personal: Literal["none", "heads", "embedding"] = "none"
    """Personalise on segment_key: heads (one head per value over the shared backbone) or
    embedding (a learned embedding per value conditions the reward); none: one reward. A
    value unseen in training, or none, is scored by the shared fallback."""
    segment_key: str = "style"
    """With personal: the segment attribute to condition on (example.segment[KEY]), or user
    for the pseudonymous user id."""
    personal_dim: int = 16
    """With personal=embedding: size of the user/segment embedding."""
    fallback_drop: float = 0.15
    """With personal: share of training examples whose value is dropped, so the shared
    fallback learns the population's preference."""
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    """With personal: a value needs this many training examples for its own head/embedding
    (smaller groups use the fallback and are not named in the model card)."""
    dp_epsilon: float | None = None
    """Train with DP-SGD (Opacus) to this ε: the heads train on the frozen backbone's
    features with per-example clipping and Poisson sampling (see docs/privacy.md)."""
    dp_delta: float = 1e-5
    """With dp_epsilon: δ of the (ε, δ) guarantee; keep it below 1 / training examples."""
    dp_max_grad_norm: float = 1.0
    """With dp_epsilon: per-example gradient clipping norm."""
    train: TrainConfig = field(default_factory=_reward_engine_defaults)
    """Engine settings (optimiser, schedule, batches, precision, seed, early stopping)."""

    def __post_init__(self) -> None:
        # Neither is allowed here (so the config nests, e.g. in the demo's, and `config show`
        # works); run() refuses it before any model loads.
        if self.data is not None and self.snapshot is not None:
            raise PreflineError("give exactly one of snapshot or data", field="snapshot")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise PreflineError(f"{name} must be in [0, 0.5), got {getattr(self, name)}",
                                    field=name)
        check_max_length(self.max_length)  # the one rule every trainer shares
        t = self.train
        checks: list[tuple[str, Any, bool, str]] = [
            ("ensemble", self.ensemble, self.ensemble >= 1, "at least 1"),
            ("lora_r", self.lora_r, self.lora_r >= 1, "at least 1"),
            ("lora_alpha", self.lora_alpha, self.lora_alpha >= 1, "at least 1"),
            ("head_dropout", self.head_dropout, 0 <= self.head_dropout < 1, "in [0, 1)"),
            ("dropout", self.dropout, self.dropout is None or 0 <= self.dropout < 1,
             "in [0, 1)"),
            ("attention_dropout", self.attention_dropout,
             self.attention_dropout is None or 0 <= self.attention_dropout < 1, "in [0, 1)"),
            ("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 0.5,
             "in [0, 0.5)"),
            ("center_coef", self.center_coef, self.center_coef is None or self.center_coef >= 0,
             "0 or more"),
            ("personal_dim", self.personal_dim, self.personal_dim >= 1, "at least 1"),
            ("fallback_drop", self.fallback_drop, 0 <= self.fallback_drop < 1, "in [0, 1)"),
            ("segment_key", self.segment_key, bool(self.segment_key.strip()),
             "a segment attribute or user"),
            ("ensemble", self.ensemble, self.personal == "none" or self.ensemble == 1,
             "1 with personal (an ensemble of personalised models is not supported)"),
            ("dp_epsilon", self.dp_epsilon, self.dp_epsilon is None or self.dp_epsilon > 0,
             "above 0"),
            ("ensemble", self.ensemble, self.dp_epsilon is None or self.ensemble == 1,
             "1 with dp_epsilon (members would add up their privacy cost)"),
            ("dp_delta", self.dp_delta, 0 < self.dp_delta < 1, "in (0, 1)"),
            ("lora", self.lora, self.dp_epsilon is None or not self.lora,
             "off with dp_epsilon (DP-SGD trains only the heads; adapters would stay at init)"),
            ("dp_max_grad_norm", self.dp_max_grad_norm, self.dp_max_grad_norm > 0, "above 0"),
            ("train.early_stopping_metric", t.early_stopping_metric,
             t.early_stopping_metric in ("accuracy", "margin"), "accuracy or margin"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise PreflineError(f"{name} must be {expected}, got {value!r}", field=name)
        check_k(self.min_group_size)
        self.head_spec()  # validates heads, head_weights and thresholds together

    def head_spec(self) -> HeadSpec:
        return HeadSpec(tuple(self.heads), dict(self.head_weights), dict(self.thresholds))
