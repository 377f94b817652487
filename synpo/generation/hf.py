"""In-process batched generation with transformers: left padding, chat template, a random stream per prompt."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from synpo.artifacts import read_jsonl, write_jsonl
from synpo.generation.protocol import Completion, SamplingParams
from synpo.generation.vllm_worker import request_seed
from synpo.modeling import render_prompts, resolve_model_path, stop_token_ids

log = logging.getLogger(__name__)


def weights_fingerprint(model_path: str) -> tuple:
    """What identifies a checkpoint's contents cheaply: its resolved directory and the name, size and modification
    time of each file in it (a retrained model written to the same directory differs)."""
    path = Path(resolve_model_path(model_path))
    if not path.is_dir():  # a hub id: its files live in the hub cache, which does not change under a running job
        return (str(path),)
    return (str(path.resolve()), *sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir()))


class HFGenerator:
    """Batched sampling with ``decode`` (below). Each prompt draws its own random stream, seeded by the call's seed
    and the prompt's index (``row_uniforms``, as the vLLM worker seeds each request), so an answer does not depend
    on the batch or shard it was decoded in, nor on which shards an earlier attempt finished: ``batch_size`` and
    ``shard_size`` are speed settings, and a resumed run reproduces an uninterrupted one.

    The last model loaded stays in memory, so that consecutive stages that generate with the same checkpoint
    (SynPO's pi_0 and pi_{t-1} answers before the improver trains, Self-Rewarding's samples and judgements) load it
    once; ``release`` frees it, and the
    run releases it before every training job (``Context.train``)."""

    runs_apart = False  # it generates in this process

    def __init__(
        self, batch_size: int = 64, shard_size: int = 256, dtype: str = "float32", trust_remote_code: bool = False
    ):
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.loads = 0  # checkpoints read from disk by this generator
        self._loaded: tuple | None = None  # (fingerprint, tokenizer, model)

    def generate_groups(self, model_path: str, groups: list[tuple[list, SamplingParams]]) -> list[list[Completion]]:
        """Each group's answers under its own sampling. Groups that differ only in temperature and seed
        (validation's greedy and sampled answers) share one decode loop, twice as wide as each alone: on a CPU a
        decode step's cost grows far slower than its rows. Each row keeps its group's temperature and random
        stream (a prompt's seed counts from its group's start), so it draws what its group alone would draw; in
        bf16 a batch's composition may move a last bit of the logits, as ``batch_size`` may."""
        if len({_shared(s) for _, s in groups}) > 1 or not any(prompts for prompts, _ in groups):
            return [self.generate(model_path, prompts, sampling) for prompts, sampling in groups]
        tokenizer, model = self._model(model_path)
        rows = [(text, s, i) for prompts, s in groups for i, text in enumerate(render_prompts(tokenizer, prompts))]
        answers: list[Completion] = []
        for b in range(0, len(rows), self.batch_size):
            answers.extend(self._batch(model, tokenizer, rows[b : b + self.batch_size]))
        ends = [0]
        for prompts, s in groups:
            ends.append(ends[-1] + len(prompts) * s.n)
        return [answers[ends[k] : ends[k + 1]] for k in range(len(groups))]

    def version(self) -> str:
        import torch
        import transformers

        return f"transformers {transformers.__version__}, torch {torch.__version__}"

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
            shard: list[str] = []
            for b in range(lo, hi, self.batch_size):
                rows = [(rendered[i], sampling, i) for i in range(b, min(hi, b + self.batch_size))]
                shard.extend(self._batch(model, tokenizer, rows))
            if shard_file is not None:
                write_jsonl(shard_file, [r.shard_row() for r in shard])
            responses.extend(shard)
            log.info("generated %d/%d", hi, len(prompts))
        if len(responses) != len(prompts) * sampling.n:
            raise RuntimeError(f"HF generation returned {len(responses)} responses for {len(prompts)} x {sampling.n}")
        return responses

    @staticmethod
    def _batch(model, tokenizer, rows: list[tuple[str, SamplingParams, int]]) -> list[Completion]:
        """The answers to ``rows``: (rendered prompt, its sampling, its index in its group), in one decode loop;
        the rows share every setting but temperature and seed (``_shared``)."""
        import torch

        sampling = rows[0][1]
        enc = tokenizer([t for t, _, _ in rows], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        temperatures = None
        if len({s.temperature for _, s, _ in rows}) > 1:
            temperatures = torch.tensor([s.temperature for _, s, _ in rows], device=model.device)
            temperatures = temperatures.repeat_interleave(sampling.n)
        uniforms = None
        if any(s.temperature > 0 for _, s, _ in rows):  # greedy rows' numbers (zeros) are never read
            uniforms = torch.cat(
                [
                    row_uniforms(s, range(i, i + 1), model.device)
                    if s.temperature > 0
                    else torch.zeros(s.n, s.max_new_tokens, device=model.device)
                    for _, s, i in rows
                ]
            )
        stops = stop_token_ids(model, tokenizer)
        ends = text_stop(tokenizer, sampling.stop)
        answers = decode(model, enc["input_ids"], enc["attention_mask"], sampling, stops, uniforms, ends, temperatures)
        n_prompt = enc["attention_mask"].sum(dim=1).repeat_interleave(sampling.n).tolist()
        texts = [
            cut_at_stop(t, sampling.stop)
            for t in tokenizer.batch_decode([a for a, _ in answers], skip_special_tokens=True)
        ]
        return [
            Completion(t.strip(), "stop" if stopped else "length", p, len(tokens))
            for t, (tokens, stopped), p in zip(texts, answers, n_prompt, strict=True)
        ]


def _shared(sampling: SamplingParams) -> tuple:
    """What the rows of one decode loop must share: all but the temperature and the seed."""
    return sampling.top_p, sampling.max_new_tokens, sampling.n, sampling.stop


def text_stop(tokenizer, stops: tuple[str, ...]):
    """A check that a row's last tokens complete one of the ``stops`` strings, with the number of last tokens it
    reads; None when there are none."""
    if not stops:
        return None
    window = 2 + max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops)

    def ended(tail: list[int]) -> bool:
        text = tokenizer.decode(tail, skip_special_tokens=True)
        return any(s in text for s in stops)

    return ended, window


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to and including the first of ``stops`` in it (the tokens decoded may run a little past it)."""
    ends = [text.index(s) + len(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


def row_uniforms(sampling: SamplingParams, rows: range, device):
    """The uniform numbers the answers to prompts ``rows`` (indices into the call's prompts) sample with, shaped
    ``(len(rows) * n, max_new_tokens)``, prompt-major: prompt ``i``'s own generator, seeded with
    ``request_seed(sampling.seed, i)``, draws its ``n`` answers' numbers, one per step each."""
    import torch

    streams = [
        torch.rand(
            sampling.n,
            sampling.max_new_tokens,
            generator=torch.Generator().manual_seed(request_seed(sampling.seed, i)),
        )
        for i in rows
    ]
    return torch.cat(streams).to(device)


def decode(
    model,
    input_ids,
    attention_mask,
    sampling: SamplingParams,
    stop_ids: list[int],
    uniforms=None,
    text_stop=None,
    temperatures=None,
) -> list[tuple[list, bool]]:
    """``sampling.n`` answers per row of a left-padded batch (prompt-major): each answer's tokens up to and
    including its first stop id, and whether it stopped (False: ``max_new_tokens`` ran out). A sampled answer
    takes its step ``s`` draw from ``uniforms[row, s]`` (``row_uniforms``), or from torch's global stream without.
    ``text_stop`` (``text_stop``: a check and its window of last tokens) ends a row whose text reaches a stop string.
    ``temperatures`` (one per answer) replaces ``sampling.temperature`` where the rows sample each their own way.

    A lean loop over the model's forward with a KV cache, in place of ``model.generate``: a row leaves the batch as
    soon as it stops (generate computes every row until the last one stops), and a sampled token is drawn by
    inverting the cumulative distribution with one uniform number per row (``torch.multinomial`` draws one
    exponential per vocabulary entry: a millisecond a step at 64 rows on a CPU). Greedy decoding is generate's,
    token for token; sampling draws from the same distribution (temperature, then nucleus ``top_p``), with another
    stream of random numbers. Only the EOS ids of the model's generation config are read from it: no penalty or
    other default of that config applies, so a model's answers depend on ``sampling`` alone."""
    import torch

    n, device = sampling.n, input_ids.device
    mask = attention_mask.repeat_interleave(n, dim=0)
    position = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache, last_logits, prefill_kw = _cached_forward(model)
    stops = torch.tensor(stop_ids, device=device)
    out = torch.full((mask.shape[0], sampling.max_new_tokens), -1, dtype=torch.long, device=device)
    ended = torch.zeros(mask.shape[0], dtype=torch.bool, device=device)  # rows a stop string ended
    alive = torch.arange(mask.shape[0], device=device)  # the rows still generating, as indices into ``out``
    with torch.inference_mode():
        logits = last_logits(input_ids.repeat_interleave(n, dim=0), mask, position, **prefill_kw)
        position = position[:, -1:] + 1
        for step in range(sampling.max_new_tokens):
            u = None if uniforms is None else uniforms[alive, step]
            temperature = sampling.temperature if temperatures is None else temperatures[alive]
            token = next_token(logits, temperature, sampling.top_p, u)
            out[alive, step] = token
            going = ~torch.isin(token, stops)
            if text_stop is not None:
                going &= ~_text_ended(out, alive, step, text_stop, ended)
            if step == sampling.max_new_tokens - 1 or not going.any():
                break
            if not going.all():  # drop the rows that stopped, from the cache too
                keep = going.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                alive, token, mask, position = alive[keep], token[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            logits = last_logits(token[:, None], mask, position)
            position = position + 1
    answers = [_until_stop([t for t in row if t >= 0], stop_ids) for row in out.tolist()]
    return [(tokens, stopped or bool(e)) for (tokens, stopped), e in zip(answers, ended.tolist(), strict=True)]


def _cached_forward(model):
    """A KV cache, a call of ``model`` through it that returns the last position's logits (float32), and the
    keywords that make the prefill compute only those logits where the model takes them."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    accepts = inspect.signature(model.forward).parameters  # newer transformers call the cache `cache`
    cache_kw = "cache" if "cache" in accepts else "past_key_values"
    prefill_kw = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}  # else the prefill's logits are whole

    def last_logits(ids, mask, position, **kw):
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, **{cache_kw: cache}, **kw
        )
        return out.logits[:, -1].float()

    return cache, last_logits, prefill_kw


def _text_ended(out, alive, step: int, text_stop, ended):
    """Which live rows' text has just reached a stop string (marked in ``ended``)."""
    import torch

    check, window = text_stop
    tails = out[alive, max(0, step - window + 1) : step + 1].tolist()
    hit = torch.tensor([check([t for t in tail if t >= 0]) for tail in tails], device=out.device)
    ended[alive[hit]] = True
    return hit


def _until_stop(tokens: list[int], stop_ids: list[int]) -> tuple[list[int], bool]:
    """An answer's tokens up to and including its first stop id, and whether it has one."""
    end = next((i for i, t in enumerate(tokens) if t in stop_ids), None)
    return (tokens[: end + 1], True) if end is not None else (tokens, False)


def next_token(logits, temperature: float, top_p: float, u=None):
    """The next token per row: the argmax at temperature 0; otherwise a draw from softmax(logits / temperature),
    restricted to the smallest set of most likely tokens whose probability reaches ``top_p`` (the first always
    kept), by inverse-CDF sampling with the uniform numbers ``u`` (one per row; default: fresh from torch).
    ``temperature``: one number, or one per row (a row at 0 takes the argmax)."""
    import torch

    if torch.is_tensor(temperature):
        greedy = temperature <= 0
        if greedy.all():
            return logits.argmax(dim=-1)
        drawn = next_token(logits / torch.where(greedy, 1.0, temperature)[:, None], 1.0, top_p, u)
        return torch.where(greedy, logits.argmax(dim=-1), drawn)
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # the mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(cdf.shape[0], device=cdf.device, dtype=cdf.dtype) if u is None else u.to(cdf.dtype)
    u = u[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[-1] - 1)
