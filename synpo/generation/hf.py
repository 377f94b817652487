"""In-process batched generation with transformers: left padding, chat template, seeded per shard."""

from __future__ import annotations

import logging
from pathlib import Path

from synpo.artifacts import read_jsonl, write_jsonl
from synpo.generation.protocol import Completion, SamplingParams
from synpo.modeling import resolve_model_path, stop_token_ids

log = logging.getLogger(__name__)


def render_prompts(tokenizer, prompts: list) -> list[str]:
    """Each prompt through the tokenizer's chat template, ready for the assistant's turn. A prompt is a user message
    (a string) or a whole conversation (a list of ``{"role", "content"}`` ending with a user turn: MT-Bench's second
    turn)."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}] if isinstance(p, str) else list(p),
            add_generation_prompt=True,
            tokenize=False,
        )
        for p in prompts
    ]


def weights_fingerprint(model_path: str) -> tuple:
    """What identifies a checkpoint's contents cheaply: its resolved directory and the name, size and modification
    time of each file in it (a retrained model written to the same directory differs)."""
    path = Path(resolve_model_path(model_path))
    if not path.is_dir():  # a hub id: its files live in the hub cache, which does not change under a running job
        return (str(path),)
    return (str(path.resolve()), *sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir()))


class HFGenerator:
    """Batched sampling with ``model.generate``. Each shard reseeds torch, so a shard's output does not depend on
    which shards ran before it in this process: a resumed run reproduces an uninterrupted one.

    The last model loaded stays in memory, so that consecutive stages that generate with the same checkpoint
    (SynPO's pi_0 and pi_{t-1} answers before the improver trains, Self-Rewarding's samples and judgements) load it
    once; ``release`` frees it, and the
    run releases it before every training job (``Context.train``)."""

    def __init__(
        self, batch_size: int = 64, shard_size: int = 256, dtype: str = "float32", trust_remote_code: bool = False
    ):
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.loads = 0  # checkpoints read from disk by this generator
        self._loaded: tuple | None = None  # (fingerprint, tokenizer, model)

    def release(self) -> None:
        """Free the model kept from the last call (its memory goes back before training needs it)."""
        if self._loaded is None:
            return
        import gc

        import torch

        self._loaded = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _model(self, model_path: str):
        import torch

        from synpo.modeling import load_causal_lm, load_tokenizer

        key = weights_fingerprint(model_path)
        if self._loaded is None or self._loaded[0] != key:
            self.release()
            tokenizer = load_tokenizer(model_path, self.trust_remote_code)
            tokenizer.padding_side = "left"
            model = load_causal_lm(model_path, self.dtype, self.trust_remote_code).eval()
            model.to("cuda" if torch.cuda.is_available() else "cpu")
            self._loaded, self.loads = (key, tokenizer, model), self.loads + 1
            log.info("loaded %s for generation (checkpoint load %d of this run)", model_path, self.loads)
        return self._loaded[1], self._loaded[2]

    def generate(
        self, model_path: str, prompts: list[str], sampling: SamplingParams, shard_dir: Path | None = None
    ) -> list[Completion]:
        import torch

        if not prompts:
            return []
        tokenizer, model = self._model(model_path)
        rendered = render_prompts(tokenizer, prompts)
        responses: list[str] = []
        n_shards = (len(prompts) + self.shard_size - 1) // self.shard_size
        for k in range(n_shards):
            lo, hi = k * self.shard_size, min(len(prompts), (k + 1) * self.shard_size)
            shard_file = Path(shard_dir) / f"shard-{k:05d}.jsonl" if shard_dir else None
            if shard_file is not None and shard_file.is_file():
                rows = read_jsonl(shard_file)
                if len(rows) == (hi - lo) * sampling.n:
                    responses.extend(Completion.from_shard_row(r) for r in rows)
                    continue
            torch.manual_seed(sampling.seed * 1_000_003 + k)
            shard: list[str] = []
            for b in range(lo, hi, self.batch_size):
                shard.extend(self._batch(model, tokenizer, rendered[b : min(hi, b + self.batch_size)], sampling))
            if shard_file is not None:
                write_jsonl(shard_file, [r.shard_row() for r in shard])
            responses.extend(shard)
            log.info("generated %d/%d", hi, len(prompts))
        if len(responses) != len(prompts) * sampling.n:
            raise RuntimeError(f"HF generation returned {len(responses)} responses for {len(prompts)} x {sampling.n}")
        return responses

    @staticmethod
    def _batch(model, tokenizer, texts: list[str], sampling: SamplingParams) -> list[Completion]:
        import torch

        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        sample = sampling.temperature > 0
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=None,
                max_new_tokens=sampling.max_new_tokens,
                num_return_sequences=sampling.n,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(model, tokenizer),
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        stops = torch.tensor(stop_token_ids(model, tokenizer), device=new_tokens.device)
        is_stop = torch.isin(new_tokens, stops)
        stopped = is_stop.any(dim=1)
        # Generated tokens up to and including the first stop (what follows is padding of a finished row).
        n_new = torch.where(stopped, is_stop.int().argmax(dim=1) + 1, new_tokens.shape[1]).tolist()
        n_prompt = enc["attention_mask"].sum(dim=1).repeat_interleave(sampling.n).tolist()
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [
            Completion(t.strip(), "stop" if s else "length", p, g)
            for t, s, p, g in zip(texts, stopped.tolist(), n_prompt, n_new, strict=True)
        ]
