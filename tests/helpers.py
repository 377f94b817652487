"""Helpers that several test modules share: tiny models built here with the real classes and the real layouts."""

import json

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from synpo.modeling import load_tokenizer

RM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}### {{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
)
ARMO_CODE = """
import os
from dataclasses import dataclass

import torch
from transformers import LlamaForSequenceClassification
from transformers.utils import ModelOutput

if os.environ.get("ARMO_SENTINEL"):
    open(os.environ["ARMO_SENTINEL"], "w").write("custom code ran")


@dataclass
class ArmoOutput(ModelOutput):
    score: torch.FloatTensor = None


class TinyArmoRM(LlamaForSequenceClassification):
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask)
        return ArmoOutput(score=2.0 * out.logits[:, 0])
"""


def build_reward_model(path, custom: bool = False):
    tok = load_tokenizer("builtin:tiny-sft")
    tok.chat_template = RM_TEMPLATE  # the reward model's own format, unlike the policy's
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    if custom:
        (path / "modeling_tiny_armo.py").write_text(ARMO_CODE)
        cfg = json.loads((path / "config.json").read_text())
        cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_tiny_armo.TinyArmoRM"}
        (path / "config.json").write_text(json.dumps(cfg))
    return path


# The published config.json values of the paper's 7B/8B models (architecture only; no weights are made).
PAPER_CONFIGS = {
    "mistral_7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768),
    "llama3_8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192),
}  # fmt: skip


def write_paper_config(path, name: str):
    """A directory holding only the config.json of one of the paper's models (a Llama-architecture config with its
    published sizes): enough for anything that reads a model's shape without its weights."""
    from transformers import LlamaConfig

    LlamaConfig(**PAPER_CONFIGS[name], torch_dtype="bfloat16").save_pretrained(path)
    return path
