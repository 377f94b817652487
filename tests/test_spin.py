"""SPIN and the SPIN-limits fixes: the loss, swaps, noise, adaptive routing, configs, and a micro run of each."""

import json
import math
import random
import sys

import pytest
import torch
from conftest import compose
from helpers import run_cli

from synpo.config import validate
from synpo.errors import UserError
from synpo.methods.spin import build_pairs, noise_temperature, route, token_noise
from synpo.modeling import load_causal_lm, load_tokenizer
from synpo.scoring.verifier import VerifierScorer
from synpo.tinyworld.tasks import Task
from synpo.training.common import HParams
from synpo.training.dpo import build_dpo_trainer

PAIRS = [
    {"prompt": "Add the numbers 3 and 4.", "chosen": "The sum of 3 and 4 is 7.", "rejected": "8"},
    {"prompt": "Uppercase the word rose.", "chosen": "The word in uppercase is ROSE.", "rejected": "rose rose"},
]


@pytest.fixture(scope="module")
def perturbed_policy(tmp_path_factory):
    """The shipped model with its weights nudged: a policy that differs from its reference."""
    path = tmp_path_factory.mktemp("policy")
    model, tok = load_causal_lm("builtin:tiny-sft"), load_tokenizer("builtin:tiny-sft")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _summed_logps(model, ids, n_prompt):
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    targets = torch.tensor(ids[1:])
    return logp[torch.arange(len(targets)), targets][n_prompt - 1 :].sum().item()


def test_loss_is_log2_when_policy_equals_reference(tmp_path):
    """With pi = pi_ref every log-ratio is 0, so L = -log sigmoid(beta * 0) = log 2 = 0.693147 for any data."""
    hp = HParams(batch_size=2, max_steps=1, max_length=128)
    trainer, _ = build_dpo_trainer("builtin:tiny-sft", "builtin:tiny-sft", PAIRS, tmp_path, hp, beta=0.1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.eval(), batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)


def test_loss_uses_summed_logps_against_the_reference(tmp_path, perturbed_policy):
    """L = mean_i -log sigmoid(beta * [(log pi(y|x) - log ref(y|x)) - (log pi(y'|x) - log ref(y'|x))]) with log-probs
    summed over completion tokens; policy = perturbed model, reference = the shipped one, beta = 0.5."""
    hp = HParams(batch_size=2, max_steps=1, max_length=128)
    trainer, _ = build_dpo_trainer(perturbed_policy, "builtin:tiny-sft", PAIRS, tmp_path, hp, beta=0.5)
    policy, ref = trainer.model.eval(), load_causal_lm("builtin:tiny-sft").eval()
    rows = [trainer.train_dataset[i] for i in range(2)]
    with torch.no_grad():
        loss = trainer.compute_loss(policy, trainer.data_collator(rows))
    expected = []
    for row in rows:
        n_prompt = len(row["prompt_ids"])
        w = row["prompt_ids"] + row["chosen_ids"]
        lose = row["prompt_ids"] + row["rejected_ids"]
        delta = (_summed_logps(policy, w, n_prompt) - _summed_logps(ref, w, n_prompt)) - (
            _summed_logps(policy, lose, n_prompt) - _summed_logps(ref, lose, n_prompt)
        )
        expected.append(math.log1p(math.exp(-0.5 * delta)))
    assert loss.item() == pytest.approx(sum(expected) / 2, abs=1e-4)
    assert abs(loss.item() - math.log(2)) > 1e-4  # the reference matters


def test_judged_swaps_exactly_the_pairs_where_generated_wins():
    scorer = VerifierScorer()
    tasks = [Task("add", (3, 4)), Task("uppercase", ("rose",)), Task("sort", (5, 3, 9)), Task("count", ("apple",))]
    prompts = [t.prompt for t in tasks]
    real = [t.terse() for t in tasks[:2]] + [t.gold() for t in tasks[2:]]  # 0.7, 0.7, 1.0, 1.0
    generated = [t.gold() for t in tasks[:2]] + ["9 5 3", "5"]  # 1.0, 1.0, worse, terse 0.7
    s_real, s_gen = scorer.score(prompts, real), scorer.score(prompts, generated)
    gaps = [a - b for a, b in zip(s_real, s_gen, strict=True)]
    routes = [route("spin_judged", g, 0.3, 0.1) for g in gaps]
    assert routes == ["swap", "swap", "keep", "keep"]
    rows, info = build_pairs(prompts, real, generated, gaps, s_real, s_gen, routes, {}, 0.0, None, random.Random(0))
    assert [r["chosen"] for r in rows] == generated[:2] + real[2:]
    assert [r["rejected"] for r in rows] == real[:2] + generated[2:]
    assert info["swap_rate"] == 0.5 and info["label_issue_rate"] == 0.5
    plain = [route("spin", g, 0.3, 0.1) for g in gaps]
    assert plain == ["keep"] * 4


@pytest.mark.parametrize(
    "s_real,s_gen,expected",
    [
        (1.0, 0.6, "keep"),  # margin 0.4 > 0.3, real wins: judged order = SPIN order
        (0.6, 1.0, "swap"),  # margin 0.4 > 0.3, generated wins
        (0.5, 0.75, "keep"),  # margin 0.25: in between
        (0.75, 0.5, "keep"),  # margin 0.25, real ahead: in between
        (0.5, 0.55, "noise"),  # margin 0.05 < 0.1
        (0.7, 0.7, "noise"),  # margin 0
    ],
)
def test_adaptive_routing_at_the_boundaries(s_real, s_gen, expected):
    assert route("spin_adaptive", s_real - s_gen, 0.3, 0.1) == expected


def test_adaptive_boundaries_exact():
    """Margins exactly on a threshold (binary-exact values): neither above the reverse nor below the noise one."""
    assert route("spin_adaptive", -0.5, 0.5, 0.25) == "keep"  # margin == reverse_threshold: not above
    assert route("spin_adaptive", -0.25, 0.5, 0.25) == "keep"  # margin == noise_threshold: not below
    assert route("spin_adaptive", -0.625, 0.5, 0.25) == "swap"
    assert route("spin_adaptive", 0.625, 0.5, 0.25) == "keep"  # real wins by a large margin: SPIN's order
    assert route("spin_adaptive", -0.125, 0.5, 0.25) == "noise"


def test_token_noise_rate_is_statistically_right():
    tok = load_tokenizer("builtin:tiny-sft")
    text = " ".join(["The sorted numbers are: 3 5 9 and the word in uppercase is ROSE."] * 200)
    rng = random.Random(1234)
    noised, replaced, n = token_noise(text, tok, 0.2, rng)
    sd = math.sqrt(n * 0.2 * 0.8)
    assert abs(replaced - 0.2 * n) < 4 * sd and noised != text
    assert token_noise(text, tok, 0.0, rng) == (text, 0, n)


def test_noise_temperature_anneals():
    cfg = compose(["experiment=tiny_spin_noised"])  # 1.2 -> 1.0 over 3 iterations
    assert [noise_temperature(cfg, t) for t in (1, 2, 3)] == pytest.approx([1.2, 1.1, 1.0])


def test_schedules_resolve_per_iteration():
    """Beta and the learning rate come from the per-iteration schedules where given (SPIN's 0.1, 0.1, 5.0)."""
    from synpo.training.config import beta_candidates, hparams

    cfg = compose(
        ["experiment=tiny_spin", "trainer.beta_schedule=[0.1,0.1,5.0]", "trainer.lr_schedule=[1e-5,1e-5,1e-6]"]
    )
    assert beta_candidates(cfg.trainer, 3) == [(5.0, None)] and beta_candidates(cfg.trainer, 1) == [(0.1, None)]
    assert hparams(cfg.trainer, cfg.model, cfg.launch, seed=0, t=3).learning_rate == 1e-6
    cfg = compose(["experiment=tiny_spin", "trainer.epochs_schedule=[3,6,6]"])
    assert [hparams(cfg.trainer, cfg.model, cfg.launch, seed=0, t=t).epochs for t in (1, 2, 3)] == [3, 6, 6]
    assert (
        hparams(cfg.trainer, cfg.model, cfg.launch, seed=0).epochs == cfg.trainer.epochs
    )  # no iteration: no schedule
    cfg = compose(["experiment=tiny_spin", "trainer.beta=9.0"])
    assert beta_candidates(cfg.trainer, 3) == [(9.0, None)]
    grid = compose(["trainer.gamma=null", "trainer.gamma_beta_ratio=0.5", "trainer.beta_grid=[2,10]"]).trainer
    assert beta_candidates(grid, 1) == [(2.0, 1.0), (10.0, 5.0)]


def _problems(overrides):
    with pytest.raises(UserError) as e:
        validate(compose(overrides))
    return str(e.value)


def test_bad_spin_values_name_their_keys():
    assert "method.noise.token_rate=-0.1 must be in [0, 1)" in _problems(
        ["experiment=tiny_spin_noised", "method.noise.token_rate=-0.1"]
    )
    msg = _problems(["experiment=tiny_spin_adaptive", "method.reverse_threshold=0.05"])
    assert "method.reverse_threshold=0.05 < method.noise_threshold=0.1" in msg
    msg = _problems(["experiment=tiny_spin", "trainer.beta_schedule=[0.1,0.1]"])
    assert "trainer.beta_schedule has 2 value(s) but method.iterations=3" in msg
    assert "set trainer=dpo" in _problems(["method=spin"])
    msg = _problems(
        [
            "experiment=tiny_spin_noised",
            "method.noise.temperature=null",
            "method.noise.token_rate=0",
            "method.noise.temperature_final=null",
        ]
    )
    assert "spin_noised with no noise" in msg


def test_paper_spin_configs_carry_the_repo_hyperparameters():
    for name in ("zephyr_spin", "llama2_spin"):
        cfg = compose([f"experiment={name}", f"generator.python={sys.executable}"])
        validate(cfg)
        t = cfg.trainer
        assert list(t.beta_schedule) == [0.1, 0.1, 0.1, 5.0]
        assert list(t.lr_schedule) == [5e-7, 5e-7, 1e-7, 1e-7]
        assert t.optimizer == "rmsprop" and t.global_batch_size == 64 and cfg.method.iterations == 4
        assert list(t.epochs_schedule) == [3, 6, 6, 6]  # configs/config.yaml, then scripts/finetune_iter{1,2,3}.sh
        assert cfg.method.generation_prompt == "instruction" and cfg.method.system_turn == "empty"
        assert cfg.scorer.name == "pairrm"  # validation scores with a real scorer, not the tiny world's verifier
    report = compose(["experiment=zephyr_spin", "eval=[validation,spin_report]"]).eval.lm_eval.suites.spin_report
    shots = {t.task: t.num_fewshot for t in report.tasks}
    assert shots == {
        "arc_challenge": 25,
        "arc_easy": 25,
        "truthfulqa_mc1": 0,
        "truthfulqa_mc2": 0,
        "winogrande": 5,
        "gsm8k": 5,
        "hellaswag": 10,
        "mmlu": 5,
    }


@pytest.mark.slow
def test_the_spin_repos_recipe_runs_on_the_tiny_world(tmp_path):
    """The SPIN repo's generation prompt, empty system turn and per-iteration epochs, end to end: the generated side
    was asked the raw instruction prompt, each iteration trained its scheduled epochs, results record the backend."""
    run_dir = tmp_path / "run"
    opts = ["method.generation_prompt=instruction", "method.system_turn=empty", "trainer.epochs_schedule=[1,2]"]
    proc = run_cli(run_dir, "experiment=tiny_spin", "method.iterations=2", "data.n_train=48", "data.n_val=16", *opts)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["epochs"] for r in results["iterations"][1:]] == [1, 2]
    assert results["generation"]["backend"] == "hf" and results["generation"]["version"].startswith("transformers")
    asked = [json.loads(line)["prompt"] for line in (run_dir / "iter_1/generated.jsonl").read_text().splitlines()]
    assert all(p["raw"].startswith("### Instruction: ") and p["raw"].endswith("\n\n### Response: ") for p in asked)


@pytest.mark.parametrize("method", ["spin", "spin_judged", "spin_noised", "spin_adaptive"])
def test_micro_run_of_each_method(method, tmp_path):
    from synpo.tracking import offline_run_files, read_offline_history

    run_dir = tmp_path / "run"
    proc = run_cli(run_dir, f"experiment=tiny_{method}", "method.iterations=2", "data.n_train=48", "data.n_val=16")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for r in rows[1:]:
        for key in ("label_issue_rate", "swap_rate", "noise_rate", "keep_rate", "token_noise_rate", "val_score"):
            assert key in r
        # each rate is rounded to 6 decimals, so their sum is 1 within 3 x 5e-7
        assert r["swap_rate"] + r["noise_rate"] + r["keep_rate"] == pytest.approx(1.0, abs=1.5e-6)
    assert rows[2]["d_size"] == 96  # this iteration's 48 pairs plus the previous iteration's 48
    for it in (1, 2):
        for name in ("generated.jsonl", "scores.jsonl", "pairs.jsonl", "metrics.json", "policy/config.json"):
            assert (run_dir / f"iter_{it}" / name).exists()
    if method == "spin":
        assert all(r["swap_rate"] == 0 and r["noise_rate"] == 0 for r in rows[1:])
    if method == "spin_noised":
        assert all(r["noise_rate"] == 1.0 and r["token_noise_rate"] > 0 for r in rows[1:])
    history = [h for h in read_offline_history(offline_run_files(run_dir)[0]) if "val_score" in h]
    assert [h["_step"] for h in history] == [0, 1, 2]
    assert all("swap_rate" in h and "noise_rate" in h and "keep_rate" in h for h in history[1:])
