"""The tiny world's tokenizer (byte-level BPE trained on the world's own text, with a chat template) and model.

The model is a real ``LlamaForCausalLM`` (or ``MistralForCausalLM``) with head_dim 64, the smallest head size that
vLLM's CPU backend accepts, so every loading path used at 7B scale is exercised here.
"""

from __future__ import annotations

from transformers import LlamaConfig, MistralConfig, PreTrainedTokenizerFast

BOS, EOS, PAD = "<s>", "<|end|>", "<pad>"
SPECIAL_TOKENS = [PAD, BOS, EOS, "<|user|>", "<|assistant|>", "<|system|>"]
# One turn per message, closed by EOS, which is also the generation stop token. The template opens with BOS itself,
# so callers tokenize rendered prompts with add_special_tokens=False (no double BOS).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% if not loop.last or message['role'] != 'assistant' or not continue_final_message %}<|end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(corpus: list[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[3:],
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, arch: str = "llama", hidden: int = 128, layers: int = 4, seed: int = 0):
    """A randomly initialised tiny causal LM whose special-token ids match ``tokenizer``."""
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in ("llama", "mistral"):
        raise ValueError(f"arch must be 'llama' or 'mistral', got {arch!r}")
    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        head_dim=64,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlamaConfig(**kwargs) if arch == "llama" else MistralConfig(sliding_window=None, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
