"""Reward models as pointwise scorers: any sequence-classification RM (``reward_model``, score = logit 0) and ArmoRM
(``armorm``: the architecture implemented in ``synpo.scoring.armorm``, or, opted into with
``scorer.trust_remote_code=true``, the checkpoint's own code, score = ``output.score``).

The policy's conversation is re-rendered with **the scorer's own tokenizer and chat template**: an RM was trained on
its own format, not on the policy's.
"""

from __future__ import annotations

import logging

from synpo.errors import UserError
from synpo.memory import DeviceHeld
from synpo.scoring.base import PointwiseScorer, length_batches

log = logging.getLogger(__name__)

REMOTE_CODE_FAILED = (
    "scorer=armorm with scorer.trust_remote_code=true runs the checkpoint's own modeling code, and it failed to "
    "load: {error}. That code imports names that transformers {version} no longer has (LLAMA_INPUTS_DOCSTRING was "
    "removed in transformers 5). Set scorer.trust_remote_code=false: ArmoRM is implemented here "
    "(synpo/scoring/armorm.py) and loads the same weights without running the checkpoint's code."
)


class RewardModelScorer(PointwiseScorer):
    """A sequence-classification reward model; subclasses change how the model is built and read
    (``_load_model``, ``_values``)."""

    def __init__(
        self,
        name_or_path: str,
        batch_size: int = 8,
        max_length: int = 4096,
        output: str = "logits",
        trust_remote_code: bool = False,
        dtype: str = "float32",
    ):
        from transformers import AutoTokenizer

        self.name_or_path, self.output, self.trust_remote_code = name_or_path, output, trust_remote_code
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model = self._load_model(dtype).eval()
        except (OSError, ValueError) as e:
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
        self.batch_size, self.max_length = batch_size, max_length

    def _load_model(self, dtype: str):
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification

        try:
            return AutoModelForSequenceClassification.from_pretrained(
                self.name_or_path, dtype=getattr(torch, dtype), trust_remote_code=self.trust_remote_code
            )
        except (ImportError, AttributeError, NameError) as e:  # raised inside the checkpoint's own code
            if not self.trust_remote_code:
                raise
            message = f"{type(e).__name__}: {str(e).splitlines()[0]}"
            raise UserError(REMOTE_CODE_FAILED.format(error=message, version=transformers.__version__)) from None

    def release(self) -> None:
        self.held.release()

    def accepts(self, prompt: str) -> bool:
        return bool(prompt.strip())

    def render(self, prompt: str, response: str) -> str:
        """The (prompt, response) conversation in the reward model's own chat format."""
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def _values(self, model, enc):
        """One score per row of the batch ``enc``."""
        out = model(**enc)
        return out.score if self.output == "score" else out.logits[:, 0]

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        import torch

        texts = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
        model = self.held.acquire()
        scores: list[float] = [0.0] * len(texts)
        for rows in length_batches([len(t) for t in texts], self.batch_size):
            enc = self.tokenizer(
                [texts[i] for i in rows],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
            ).to(self.held.device)
            with torch.inference_mode():
                values = self._values(model, enc)
            for i, v in zip(rows, values.float().reshape(-1).tolist(), strict=True):
                scores[i] = float(v)
        return scores


class ArmoRMScorer(RewardModelScorer):
    """ArmoRM through ``synpo.scoring.armorm``: the checkpoint's weights in an architecture built here, no remote
    code. The gate reads the position where the prompt ends: the last run of the template's end-of-turn token and
    assistant header, found among each row's real tokens."""

    def __init__(self, name_or_path: str, batch_size: int = 8, max_length: int = 4096, dtype: str = "float32"):
        super().__init__(name_or_path, batch_size, max_length, "score", trust_remote_code=False, dtype=dtype)
        self.pattern = prompt_end_pattern(self.tokenizer)

    def _load_model(self, dtype: str):
        import torch

        from synpo.scoring.armorm import ArmoRMModel

        model, info = ArmoRMModel.from_pretrained(
            self.name_or_path, dtype=getattr(torch, dtype), output_loading_info=True
        )
        wrong = {k: sorted(v)[:5] for k, v in info.items() if k in ("missing_keys", "unexpected_keys") and v}
        if wrong:  # a head left randomly initialised would score noise after hours of generation
            raise UserError(
                f"scorer.name_or_path={self.name_or_path!r} does not match ArmoRM's layout ({wrong}); is it the "
                "RLHFlow/ArmoRM-Llama3-8B-v0.1 checkpoint?"
            )
        return model

    def _values(self, model, enc):
        import torch

        from synpo.scoring.armorm import gate_positions

        try:
            at = gate_positions(enc["input_ids"].tolist(), enc["attention_mask"].tolist(), self.pattern)
        except ValueError as e:
            raise UserError(
                f"ArmoRM cannot find where a prompt ends ({e}): the conversation was cut at scorer.max_length="
                f"{self.max_length} tokens inside the prompt. Raise scorer.max_length, or shorten the prompts."
            ) from None
        return model(enc["input_ids"], enc["attention_mask"], torch.tensor(at))


def prompt_end_pattern(tok) -> list[int]:
    """The tokens between a user's message and the assistant's answer in ``tok``'s chat template: the end of the
    user's turn and the assistant's header (Llama-3: ``<|eot_id|><|start_header_id|>assistant<|end_header_id|>``
    and two newlines), where ArmoRM's gate reads the prompt."""
    from synpo.modeling import end_of_turn_id

    user = [{"role": "user", "content": "x"}]
    turn = tok.apply_chat_template(user, tokenize=False)
    asking = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    header = asking[len(turn) :] if asking.startswith(turn) else ""
    eot = end_of_turn_id(tok)
    return ([eot] if eot is not None else []) + tok(header, add_special_tokens=False)["input_ids"]
