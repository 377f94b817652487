"""Sequence-classification reward models as scorers: any RM (``reward_model``, score = logit 0) and ArmoRM
(``armorm``, score = ``output.score``, custom code that needs ``trust_remote_code``).

The policy's conversation is re-rendered with **the scorer's own tokenizer and chat template**: an RM was trained on
its own format, not on the policy's.
"""

from __future__ import annotations

import logging

from synpo.errors import UserError
from synpo.memory import DeviceHeld
from synpo.scoring.base import PointwiseScorer

log = logging.getLogger(__name__)

ARMORM_RISK = (
    "scorer=armorm loads RLHFlow/ArmoRM-Llama3-8B-v0.1, whose model class is custom Python code shipped with the "
    "checkpoint; loading it runs that code with your permissions. Read its modeling file, then set "
    "scorer.trust_remote_code=true to allow it for this model only."
)


class RewardModelScorer(PointwiseScorer):
    def __init__(
        self,
        name_or_path: str,
        batch_size: int = 8,
        max_length: int = 4096,
        output: str = "logits",
        trust_remote_code: bool = False,
        dtype: str = "float32",
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if output == "score" and not trust_remote_code:
            raise UserError(ARMORM_RISK)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
            ).eval()
        except OSError as e:
            raise UserError(
                f"scorer.name_or_path={name_or_path!r} could not be loaded: {str(e).splitlines()[0]}. "
                "Give a local directory written by save_pretrained, or download the model first."
            ) from None
        if self.tokenizer.chat_template is None:
            raise UserError(
                f"scorer.name_or_path={name_or_path!r} has no chat template, so a conversation cannot be "
                "rendered the way the reward model was trained. Use a reward model with a chat template."
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        self.held = DeviceHeld(model)  # on the accelerator only while a scoring stage runs
        self.batch_size, self.max_length, self.output = batch_size, max_length, output

    def release(self) -> None:
        self.held.release()

    def accepts(self, prompt: str) -> bool:
        return bool(prompt.strip())

    def render(self, prompt: str, response: str) -> str:
        """The (prompt, response) conversation in the reward model's own chat format."""
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        import torch

        texts = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
        model = self.held.acquire()
        scores: list[float] = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[i : i + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
            ).to(self.held.device)
            with torch.inference_mode():
                out = model(**enc)
            values = out.score if self.output == "score" else out.logits[:, 0]
            scores.extend(float(v) for v in values.float().reshape(-1))
            log.debug("scored %d/%d", min(len(texts), i + self.batch_size), len(texts))
        return scores
