"""Training jobs' per-token log-probabilities on a device where TRL's fused LM head has no kernel.

TRL's SFT and DPO trainers patch the model's forward with a fused LM head (``fused_lm_head=True``). Where Triton
runs (a GPU) it scores only the labelled positions in tiles without materialising the logits. Elsewhere (a CPU) it
scores every position, prompt and padding included, and runs the head's forward and weight gradient in float32 even
when the model trains in bf16: in the SmolLM2 improver's SFT under bf16 that path was 37% of the job's CPU time (LOG
2026-12-07). On a CPU in bf16 we re-patch the fused forward (the SFT job's model, DPO's policy and reference) to
score only the labelled positions, the head's matmul under autocast as every other layer's, and the log-softmax in
float32. The loss is the same function; the logits are rounded to bf16 as plain autocast training rounds them.
"""

from __future__ import annotations

import types

# Text-config attributes that make TRL's head transform the logits; a model with any of them set keeps TRL's path.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier")


def compact_head_applies(model, dtype: str) -> bool:
    """Whether a job scores its labelled positions with ``compact_lm_head``: bf16 training on a CPU, a model
    whose logits are the head's output as they are, and no mixture-of-experts router loss."""
    config = model.config.get_text_config()
    return (
        dtype == "bfloat16"
        and model.device.type == "cpu"
        and not any(getattr(config, name, None) not in (None, 1.0) for name in LOGIT_TRANSFORMS)
        and getattr(config, "logits_scaling", None) is None
        and not getattr(config, "output_router_logits", False)
    )


EXTRAS = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")  # TRL's optional per-token outputs


def compact_lm_head(model, extras: tuple[str, ...] = EXTRAS) -> None:
    """Re-patch ``model`` (already patched by TRL's SFT or DPO trainer): a call with ``fused_lm_head=True`` and
    ``labels`` runs the backbone, then the LM head on the positions whose next-token label is not -100 only, and
    returns TRL's ``FusedCausalLMOutput``: the loss, the label mask, the log-probabilities and, without gradient, the
    fields of ``extras`` its trainer reads (the SFT trainer: entropy and top-1 hits; DPO's: also the mean logit and
    ``log(sum p^2)``), zero where the label is -100. Every other call goes to TRL's forward."""
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    trl_forward = model.forward

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or labels is None or shift_labels is not None:
            return trl_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        target = labels[mask]
        logits = self.get_output_embeddings()(hidden[mask]).float()
        log_softmax = logits.log_softmax(-1)
        log_probs = log_softmax.gather(-1, target[:, None]).squeeze(-1)
        fields = {
            "entropy": lambda: -(log_softmax.exp() * log_softmax).sum(-1),
            "log_sum_sq_probs": lambda: torch.logsumexp(2 * log_softmax, dim=-1),
            "mean_logits": lambda: logits.mean(-1),
            "is_top1": lambda: logits.argmax(-1) == target,
        }

        def spread(values):
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        with torch.no_grad():
            computed = {name: spread(fields[name]()) for name in extras}
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count, log_probs=spread(log_probs), label_mask=mask, **computed
        )

    model.forward = types.MethodType(forward, model)
