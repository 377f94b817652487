"""Helpers that several test modules share: micro runs of `python run.py` as a user starts them, and tiny models
built here with the real classes and the real layouts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForSequenceClassification

from synpo.modeling import load_causal_lm, load_tokenizer
from synpo.training.common import HParams

ROOT = Path(__file__).resolve().parents[1]

# --- micro runs through the command line ---------------------------------------------------------------------

MICRO = [
    "method.iterations=1",
    "method.n_prompts=48",
    "method.pairs_per_iteration=32",
    "data.n_train=96",
    "data.n_val=24",
    "trainer.beta_grid=[2,10]",
    "logger.mode=offline",
    "generator.shard_size=32",
]
SECRET = "sk-test-0123456789abcdef-never-log-me"


def micro_overrides(extra: tuple[str, ...]) -> list[str]:
    """MICRO's overrides that the method chosen by ``extra`` has (a SPIN or seed method has no prompt counts)."""
    from conftest import compose

    cfg = compose([e for e in extra if e.startswith(("method=", "experiment="))])
    return [o for o in MICRO if OmegaConf.select(cfg, o.split("=")[0], default=_ABSENT) is not _ABSENT]


_ABSENT = object()


def cli_command(run_dir: Path, *extra: str) -> list[str]:
    """`python run.py` on ``run_dir`` with the micro overrides that apply, then ``extra``."""
    micro = micro_overrides(extra)
    return [sys.executable, "run.py", *micro, f"run_dir={run_dir}", f"hydra.run.dir={run_dir}/.hydra_out", *extra]


def cli_env() -> dict:
    return {**os.environ, "WANDB_API_KEY": SECRET, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(run_dir: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """A micro run of ``python run.py`` with ``extra`` overrides, as a user starts it (W&B key set, hub offline)."""
    return subprocess.run(
        cli_command(run_dir, *extra), cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def fails_cleanly(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """The run stopped with a config error (exit 2), no traceback, and each of ``needles`` in its output."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-2000:]
    assert "Traceback" not in out
    for needle in needles:
        assert needle in out, (needle, out[-2000:])


# Small preference pairs on the tiny world's addition task, for training jobs (test_launch, test_distributed).
PAIRS = [
    {
        "prompt": f"Add the numbers {a} and {b}.",
        "chosen": f"The sum of {a} and {b} is {a + b}.",
        "rejected": f"{a + b + 1}",
    }
    for a, b in [(3, 4), (10, 9), (21, 5), (7, 7), (1, 30), (12, 12), (40, 2), (8, 0)]
]

# The vLLM environment of the vllm marker (`bash setup.sh --vllm-cpu`).
VLLM_PYTHON = os.environ.get("SYNPO_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python"))


# --- training jobs launched across processes (test_distributed, and test_slurm under srun) ----------------------

TINY = "builtin:tiny-sft"
# Measured here (fp32, 4 steps at lr 1e-3): the launched weights differed from the in-process ones by at most 7.9e-6
# (ZeRO-3 SimPO) while training moved them by up to 2.5e-3; reduction order across ranks explains the difference.
ZERO_TOLERANCE = 5e-5


def distributed_job(kind: str) -> dict:
    if kind == "simpo":
        return dict(model_path=TINY, pairs=PAIRS, beta=2.0, gamma=1.6)
    if kind == "dpo":
        return dict(model_path=TINY, ref_path=TINY, pairs=PAIRS, beta=0.1)
    return dict(model_path=TINY, examples=[{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS])


def distributed_hp(batch_size: int, gradient_checkpointing: bool = False) -> HParams:
    return HParams(
        batch_size=batch_size,
        max_steps=4,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        max_length=128,
        seed=3,
        gradient_checkpointing=gradient_checkpointing,
    )


def check_complete_and_equal(local_dir, launched_dir) -> None:
    start, local = load_causal_lm(TINY), load_causal_lm(str(local_dir))
    launched = load_causal_lm(str(launched_dir))  # from_pretrained: fails on a missing or misshapen tensor
    want = {k: v.shape for k, v in start.state_dict().items()}
    got = launched.state_dict()
    assert {k: v.shape for k, v in got.items()} == want  # every tensor gathered, at its full shape
    assert all(v.numel() > 0 and torch.isfinite(v).all() for v in got.values())
    diff = max((p - q).abs().max().item() for p, q in zip(local.parameters(), launched.parameters(), strict=True))
    moved = max((p - s).abs().max().item() for p, s in zip(local.parameters(), start.parameters(), strict=True))
    print(f"max |in-process - launched| = {diff:.3g}; max |trained - start| = {moved:.3g}")
    assert moved > 20 * ZERO_TOLERANCE  # training moved the weights far beyond the tolerance
    assert diff < ZERO_TOLERANCE
    tok = load_tokenizer(str(launched_dir))
    chat = [{"role": "user", "content": PAIRS[0]["prompt"]}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
    out = launched.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(ids)


# --- tiny models ----------------------------------------------------------------------------------------------

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
    "mistral_7b": dict(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
    ),
    "llama3_8b": dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
    ),
}


def write_paper_config(path, name: str):
    """A directory holding only the config.json of one of the paper's models (a Llama-architecture config with its
    published sizes): enough for anything that reads a model's shape without its weights."""
    from transformers import LlamaConfig

    LlamaConfig(**PAPER_CONFIGS[name], torch_dtype="bfloat16").save_pretrained(path)
    return path


# Stand-ins of the real models' tokenizers and templates (zephyr, Llama-3, ChatML): see tests/test_templates.py.
WORDS = "add the numbers 3 and 4 sum is 7 uppercase word rose ROSE . : hi x user assistant system"
ZEPHYR = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
STYLES = {
    # name: (bos, eos, specials, template, tokenizer adds BOS to plain text, generation-config EOS ids by token)
    "zephyr": ("<s>", "</s>", ["<|user|>", "<|assistant|>", "<|system|>"], ZEPHYR, True, ["</s>"]),
    "llama3": (
        "<|begin_of_text|>",
        "<|end_of_text|>",
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        LLAMA3,
        True,
        ["<|end_of_text|>", "<|eot_id|>"],
    ),
    "chatml": (None, "<|im_end|>", ["<|im_start|>"], CHATML, False, ["<|im_end|>"]),
}


def build_standin(tmp_path: Path, style: str) -> Path:
    """A tiny Llama with a word-level tokenizer in the given model family's conventions, saved like a checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    from synpo.tinyworld.model import build_model

    bos, eos, specials, template, adds_bos, gen_eos = STYLES[style]
    special = ["<pad>", "<unk>", *([bos] if bos else []), eos, *specials]
    vocab = {t: i for i, t in enumerate(special + sorted(set(WORDS.split()) | set("\n")))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit()])
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=specials,
    )
    fast.chat_template = template
    model = build_model(fast, hidden=64, layers=1)
    model.generation_config = GenerationConfig(
        bos_token_id=fast.bos_token_id, eos_token_id=[vocab[t] for t in gen_eos], pad_token_id=fast.pad_token_id
    )
    out = tmp_path / style
    fast.save_pretrained(out)
    model.save_pretrained(out)
    return out


def update_difference(a, b, start) -> tuple[float, float]:
    """How far two trainings of the same job from ``start`` ended apart, and how far ``a`` moved: the L2 norms, over
    all weights, of ``a - b`` and ``a - start``. Two runs on other kernels (a one-thread lane, a two-thread parent)
    agree to rounding, and Adam turns rounding in a near-zero gradient into a step of up to the learning rate, so one
    weight may differ by a few thousandths of the largest move; the whole update agrees to about 1e-5 of its norm."""
    moved = sum(((p - q) ** 2).sum().item() for p, q in zip(a.parameters(), start.parameters(), strict=True)) ** 0.5
    diff = sum(((p - q) ** 2).sum().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)) ** 0.5
    return diff, moved
