"""PairRM (llm-blender/PairRM, a DeBERTa-v3-large pairwise ranker) against current transformers.

The PyPI ``llm-blender`` package breaks with transformers >= 5, so the ranker's forward pass and checkpoint layout
are implemented here: a ``DebertaV2Model`` under ``pretrained_model`` and a two-layer head under ``head_layer``,
the layout of the ``llm-blender/PairRM-hf`` checkpoint, which loads with ``PairRMModel.from_pretrained``.

Input: ``<|source|>x`` (at most 1224 tokens) then ``<|candidate1|>a`` and ``<|candidate2|>b``, each truncated to
half of what is left of 2048 tokens. The head scores [h_source; h_candidate] at each prefix token, and PairRM's
logit is head(source, a) - head(source, b): positive when a is better.

**Threshold scale.** LLM-Blender's own API (``Blender.compare(..., return_logits=True)``, ``rank(...,
return_scores=True)`` with two candidates) and its authors' evaluation report logit(a, b) - logit(b, a): both orders,
so position bias cancels and gap(a, b) = -gap(b, a). That is ``scale="blender"``, the default, and the scale on which
SynPO's Mistral threshold 0.20 is read (the ArmoRM threshold 0.02 is likewise a difference of the scorer's own API
scores). ``scale="logit"`` halves it (the order-averaged logit, the model card's one-order scale): the reading this
project used before, where 0.20 is twice as strict.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import DebertaV2Model, DebertaV2PreTrainedModel

from synpo.errors import UserError
from synpo.memory import DeviceHeld
from synpo.scoring.base import PairwiseScorer, length_batches

SOURCE_PREFIX, CAND1_PREFIX, CAND2_PREFIX = "<|source|>", "<|candidate1|>", "<|candidate2|>"
SOURCE_MAX_LENGTH, CANDIDATE_MAX_LENGTH = 1224, 412
SCALES = {"blender": 1.0, "logit": 0.5}  # gap = scale x (logit(a, b) - logit(b, a))


class PairRMModel(DebertaV2PreTrainedModel):
    """PairRM's architecture; config carries n_tasks, drop_out and the three prefix token ids."""

    def __init__(self, config):
        super().__init__(config)
        self.pretrained_model = DebertaV2Model(config)
        h = config.hidden_size
        self.head_layer = nn.Sequential(
            nn.Dropout(config.drop_out),
            nn.Linear(2 * h, h),
            nn.Tanh(),
            nn.Dropout(config.drop_out),
            nn.Linear(h, config.n_tasks),
        )
        self.post_init()

    def head_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pair, the head's scores of (source, candidate1) and (source, candidate2): two [batch, n_tasks]."""
        c = self.config
        for name, token in (
            ("source", c.source_prefix_id),
            ("candidate1", c.cand1_prefix_id),
            ("candidate2", c.cand2_prefix_id),
        ):
            if not bool((input_ids == token).sum(dim=1).eq(1).all()):
                raise ValueError(f"every PairRM input needs exactly one <|{name}|> token")
        keep = attention_mask.ne(0).any(dim=0)  # drop all-padding columns, as PairRM does
        input_ids, attention_mask = input_ids[:, keep], attention_mask[:, keep]
        enc = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        def at(token):
            rows, cols = torch.where(input_ids == token)
            return enc[rows, cols, :]

        src = at(c.source_prefix_id)
        left = self.head_layer(torch.cat([src, at(c.cand1_prefix_id)], dim=-1))
        right = self.head_layer(torch.cat([src, at(c.cand2_prefix_id)], dim=-1))
        return left, right

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """PairRM's logit per pair: mean over tasks of head(source, cand1) - head(source, cand2)."""
        left, right = self.head_scores(input_ids, attention_mask)
        return (left - right).mean(dim=-1)


class PairRMScorer(PairwiseScorer):
    """A pairwise scorer: ``gaps(prompts, a, b)``; it has no pointwise score."""

    def __init__(self, name_or_path: str, batch_size: int = 8, dtype: str = "float32", scale: str = "blender"):
        from transformers import AutoTokenizer

        if scale not in SCALES:
            raise ValueError(f"PairRM scale must be one of {sorted(SCALES)}, got {scale!r}")
        self.scale = SCALES[scale]
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model, info = PairRMModel.from_pretrained(
                name_or_path, dtype=getattr(torch, dtype), output_loading_info=True
            )
        except OSError as e:
            raise UserError(
                f"scorer.name_or_path={name_or_path!r} could not be loaded as PairRM: "
                f"{str(e).splitlines()[0]}. Download llm-blender/PairRM-hf to a local directory and "
                "point scorer.name_or_path at it."
            ) from None
        wrong = {k: sorted(v)[:5] for k, v in info.items() if k in ("missing_keys", "unexpected_keys") and v}
        if wrong:  # a head left randomly initialised would score noise after hours of generation
            raise UserError(
                f"scorer.name_or_path={name_or_path!r} does not match PairRM's layout ({wrong}); is it the "
                "llm-blender/PairRM-hf checkpoint?"
            )
        for attr in ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id", "n_tasks", "drop_out"):
            if getattr(model.config, attr, None) is None:
                raise UserError(
                    f"{name_or_path}: config.json lacks PairRM's {attr!r}; is this the PairRM-hf "
                    "checkpoint (llm-blender/PairRM-hf)?"
                )
        self.held = DeviceHeld(model.eval())  # on the accelerator only while a scoring stage runs
        self.batch_size = batch_size

    def release(self) -> None:
        self.held.release()

    def accepts(self, prompt: str) -> bool:
        return bool(prompt.strip())

    def encode(self, source: str, cand1: str, cand2: str) -> list[int]:
        total = SOURCE_MAX_LENGTH + 2 * CANDIDATE_MAX_LENGTH
        src = self.tokenizer.encode(SOURCE_PREFIX + source, max_length=SOURCE_MAX_LENGTH, truncation=True)
        budget = (total - len(src)) // 2
        a = self.tokenizer.encode(CAND1_PREFIX + cand1, max_length=budget, truncation=True)
        b = self.tokenizer.encode(CAND2_PREFIX + cand2, max_length=budget, truncation=True)
        return src + a + b

    def logits(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        """PairRM's one-order logit per pair (positive: ``a`` better)."""
        model = self.held.acquire()
        encoded = [self.encode(x, y, z) for x, y, z in zip(prompts, a, b, strict=True)]
        out = [0.0] * len(encoded)
        for rows in length_batches([len(e) for e in encoded], self.batch_size):
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
            batch = batch.to(self.held.device)
            with torch.inference_mode():
                logits = model(batch["input_ids"], batch["attention_mask"]).float().tolist()
            for i, v in zip(rows, logits, strict=True):
                out[i] = float(v)
        return out

    def gaps(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        """logit(a, b) - logit(b, a) (``blender``), or half of it (``logit``): both orders, so position bias cancels;
        the threshold's scale."""
        forward, backward = self.logits(prompts, a, b), self.logits(prompts, b, a)
        return [self.scale * (f - r) for f, r in zip(forward, backward, strict=True)]
