"""The embedded default world: verifiable tasks, a verifier, a BPE tokenizer, a tiny Llama and its SFT checkpoint."""
