"""ArmoRM (RLHFlow/ArmoRM-Llama3-8B-v0.1) implemented here, so that it loads without the checkpoint's own code.

That code imports ``LLAMA_INPUTS_DOCSTRING`` from transformers' Llama module, which transformers 5 no longer has, and
reads the reward at the position before the first pad token: with right-padded batches whose pad is ``<|eot_id|>``
that is the end of the user's turn, not of the answer. This module builds the same architecture under the same weight
names, loads the checkpoint's weights into it (missing or unexpected keys are refused), and reads positions from the
attention mask:

- a Llama backbone (``model.*``) gives the last layer's hidden states;
- the **rewards**: ``regression_layer`` (hidden -> K objectives, no bias) at the row's last real token, multiplied
  by the fixed ``reward_transform_matrix`` (K x K);
- the **gate**: an MLP (``gating.layers``: ``gating_n_hidden`` ReLU layers of ``gating_hidden_dim``, then K outputs)
  on the hidden state where the prompt ends (the start of the last ``<end of turn><assistant header>`` run of
  tokens, the position the checkpoint's code gates on), softmax at ``gating_temperature``, times ``logit_scale``;
- the **score**: the gate-weighted sum of the transformed rewards.

Config fields read: ``num_objectives`` (19), ``gating_temperature`` (10), ``gating_hidden_dim`` (1024),
``gating_n_hidden`` (3): the checkpoint's config.json carries them, as the original code reads them.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel

ARCHITECTURE = "LlamaForRewardModelWithGating"  # the name the checkpoint's config.json gives its class


class ArmoGate(nn.Module):
    """The gating network: objective weights from the prompt's last hidden state."""

    def __init__(self, width: int, objectives: int, hidden: int, n_hidden: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.logit_scale = nn.Parameter(torch.ones(1))
        sizes = [width] + [hidden] * n_hidden
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False)])
        self.layers.append(nn.Linear(sizes[-1], objectives))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.softmax(self.layers[-1](x) / self.temperature, dim=-1) * self.logit_scale[0]


class ArmoRMModel(LlamaPreTrainedModel):
    """ArmoRM's architecture under the checkpoint's weight names; ``forward`` needs ``gate_at`` (per row, the
    position whose hidden state the gate reads), which ``ArmoRMScorer`` finds from the tokens."""

    def __init__(self, config):
        super().__init__(config)
        k = getattr(config, "num_objectives", 19)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, k, bias=False)
        self.reward_transform_matrix = nn.Parameter(torch.eye(k), requires_grad=False)
        self.gating = ArmoGate(
            config.hidden_size,
            k,
            getattr(config, "gating_hidden_dim", 1024),
            getattr(config, "gating_n_hidden", 3),
            getattr(config, "gating_temperature", 10),
        )
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, gate_at: torch.Tensor) -> torch.Tensor:
        """The score per row: rewards at the last real token (from the attention mask, whatever the padding
        side), weighted by the gate read at ``gate_at``."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = last_real_position(attention_mask).to(hidden.device)
        rewards = self.regression_layer(hidden[rows, last]) @ self.reward_transform_matrix
        gate = self.gating(hidden[rows, gate_at.to(hidden.device)])
        return (gate * rewards).sum(dim=-1)


def last_real_position(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the last position the mask marks as a real token (left or right padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.ne(0) * (positions + 1)).argmax(dim=1)


def gate_positions(ids: list[list[int]], masks: list[list[int]], pattern: list[int]) -> list[int]:
    """Per row, the start of the last occurrence of ``pattern`` (the prompt's end of turn and the assistant's
    header) among its real tokens. A row without it cannot be gated: ValueError, with the row's index."""
    out, n = [], len(pattern)
    for i, (row, mask) in enumerate(zip(ids, masks, strict=True)):
        real = [t for t, m in zip(row, mask, strict=True) if m]
        offset = next(j for j, m in enumerate(mask) if m)  # left padding shifts the real tokens
        starts = [j for j in range(len(real) - n, -1, -1) if real[j : j + n] == pattern]
        if not starts:
            raise ValueError(f"row {i}: no end-of-prompt pattern {pattern} among its tokens (truncated prompt?)")
        out.append(offset + starts[0])
    return out
