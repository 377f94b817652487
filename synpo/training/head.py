"""Training jobs' per-token log-probabilities on a device where TRL's fused LM head has no kernel.

TRL's SFT and DPO trainers patch the model's forward with a fused LM head (``fused_lm_head=True``). Where Triton
runs (a GPU) it scores only the labelled positions in tiles without materialising the logits. Elsewhere (a CPU) it
scores every position, prompt and padding included, and runs the head's forward and weight gradient in float32 even
when the model trains in bf16: in the SmolLM2 improver's SFT under bf16 that path was 37% of the job's CPU time (LOG
2026-12-07). On a CPU in bf16 we re-patch the fused forward (the SFT job's model, DPO's policy and reference) to
score only the labelled positions, the head's matmul under autocast as every other layer's, and the log-softmax in
float32. The loss is the same function; the logits are rounded to bf16 as plain autocast training rounds them.

TRL's CPO trainer (SimPO) has no fused head: it computes the logits of every position of the chosen and rejected
sequences, and on a CPU in bf16 takes their log-softmax row by row in bf16. ``compact_pair_head`` gives it the same
labelled-positions-only head: the length-averaged log-probabilities SimPO's loss reads, with the log-softmax in
float32 (so they are rounded less than TRL's bf16 ones).
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
        mask, target, logits, log_softmax, log_probs = _answer_log_probs(self, args, kwargs, labels)
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


def _answer_log_probs(model, args, kwargs, labels):
    """The backbone on the inputs, then the LM head on the positions whose next-token label is not -100 only: the
    label mask (shifted) and, flat in row-major order, those positions' labels, logits (float32), log-softmax and
    the labels' log-probabilities."""
    kwargs["use_cache"] = False
    hidden = model.base_model(*args, **kwargs).last_hidden_state[:, :-1]
    labels = labels[:, 1:].to(hidden.device)
    mask = labels != -100
    target = labels[mask]
    logits = model.get_output_embeddings()(hidden[mask]).float()
    log_softmax = logits.log_softmax(-1)
    return mask, target, logits, log_softmax, log_softmax.gather(-1, target[:, None]).squeeze(-1)


def compact_pair_head(trainer) -> None:
    """Re-patch a SimPO job (TRL's ``CPOTrainer`` with ``cpo_alpha=0``): its ``concatenated_forward`` calls the
    model with ``answer_labels``, and the model's forward (re-patched here, so that a DeepSpeed or accelerate wrapper
    passes the call through) scores the answer positions only. Returned as TRL's method returns them: each
    sequence's log-probability averaged over its answer tokens (``ipo``, ``simpo``) or summed, and, for the logged
    ``logits/chosen`` and ``logits/rejected`` means only, the chosen and rejected answer positions' mean logits."""
    import torch

    if trainer.cpo_alpha != 0 or trainer.aux_loss_enabled:  # CPO's NLL term or a router loss needs the full logits
        raise ValueError("compact_pair_head serves cpo_alpha=0 without a router loss (SimPO as synpo configures it)")
    model, average = trainer.model, trainer.loss_type in ("ipo", "simpo")
    plain_forward = model.forward

    def forward(self, *args, answer_labels=None, **kwargs):
        if answer_labels is None:
            return plain_forward(*args, **kwargs)
        mask, _, logits, _, log_probs = _answer_log_probs(self, args, kwargs, answer_labels)
        return mask, logits.detach().mean(-1), log_probs

    def concatenated_forward(model, batch):
        joined = trainer.concatenated_inputs(
            batch, padding_value=trainer.pad_token_id, device=trainer.accelerator.device
        )
        n_chosen = batch["chosen_labels"].shape[0]
        mask, mean_logits, log_probs = model(
            joined["concatenated_input_ids"],
            attention_mask=joined["concatenated_attention_mask"],
            answer_labels=joined["concatenated_labels"],
        )
        per_row = log_probs.new_zeros(mask.shape).masked_scatter(mask, log_probs).sum(-1)
        if average:
            per_row = per_row / mask.sum(-1)
        split = int(mask[:n_chosen].sum())
        nll = torch.tensor(0.0, device=per_row.device)
        return per_row[:n_chosen], per_row[n_chosen:], mean_logits[:split], mean_logits[split:], nll

    model.forward = types.MethodType(forward, model)
    trainer.concatenated_forward = concatenated_forward
