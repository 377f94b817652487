"""Every file under conf/ composes and validates; bad values give one clear error naming every bad key."""

import json
import sys
from pathlib import Path

import pytest
from conftest import CONF, ROOT, compose
from omegaconf import OmegaConf

from synpo.config import validate
from synpo.errors import UserError
from synpo.methods import METHODS

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("experiment", "hydra", "accelerate"))


def _group_options():
    for yaml in sorted(CONF.rglob("*.yaml")):
        rel = yaml.relative_to(CONF)
        if len(rel.parts) == 2 and rel.parts[0] in GROUPS:
            yield rel.parts[0], yaml.stem


def test_every_config_file_is_covered():
    """No YAML under conf/ escapes the composition tests below (torchtune checked 3 of 197; we check all)."""
    covered = {CONF / "config.yaml"}
    covered |= {CONF / g / f"{o}.yaml" for g, o in _group_options()}
    covered |= set((CONF / "experiment").glob("*.yaml"))
    covered |= set((CONF / "accelerate").glob("*.yaml"))  # checked by test_accelerate_configs_are_complete
    covered |= set((CONF / "hydra" / "launcher").glob("*.yaml"))  # checked by test_launcher_configs_compose
    assert set(CONF.rglob("*.yaml")) == covered


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "accelerate").glob("*.yaml")))
def test_accelerate_configs_are_complete(name, tmp_path):
    """Each launch topology parses, names a distributed type, and any DeepSpeed file it names exists and parses."""
    import json

    import yaml

    from synpo.training.launch import resolved_accelerate_config

    config = yaml.safe_load(resolved_accelerate_config(name, tmp_path / "a.yaml").read_text())
    assert config["distributed_type"] in ("DEEPSPEED", "MULTI_GPU")
    ds = (config.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if config["distributed_type"] == "DEEPSPEED":
        stage = json.loads(Path(ds).read_text())["zero_optimization"]["stage"]
        assert name.startswith(f"zero{stage}")
    validate(compose(["launch.launcher=accelerate", f"launch.accelerate_config={name}"]))


def test_unknown_accelerate_config_is_refused():
    msg = _problems(["launch.launcher=accelerate", "launch.accelerate_config=zero9"])
    assert "launch.accelerate_config='zero9'" in msg and "zero2" in msg


# Options that only make sense with a partner: a method's trainer is its declared trait (SPIN's is DPO), and the DPO
# trainer needs a method that trains with it.
COMPANIONS = {("method", n): [f"trainer={m.trainer}"] for n, m in METHODS.items() if m.trainer not in (None, "simpo")}
COMPANIONS[("trainer", "dpo")] = ["method=spin"]
COMPANIONS[("scorer", "reward_model")] = ["scorer.name_or_path=builtin:tiny-sft"]
COMPANIONS[("data", "jsonl")] = ["data.path=seed.jsonl"]  # the generic sources name the user's data
COMPANIONS[("method", "external")] = ["method.policy_path=builtin:tiny-sft"]  # the model it evaluates
COMPANIONS[("data", "hf")] = ["data.hf_name=user/seed"]
# The vLLM configs name .venv-vllm's interpreter, which the default suite does not need: any interpreter validates.
ANY_PYTHON = f"generator.python={sys.executable}"
COMPANIONS[("generator", "vllm")] = COMPANIONS[("generator", "vllm_cpu")] = [ANY_PYTHON]


def compose_any_python(overrides: list[str]):
    """``overrides`` composed, with this interpreter as the vLLM worker's where the backend is vLLM (only that
    backend has the field)."""
    cfg = compose(overrides)
    return compose([*overrides, ANY_PYTHON]) if cfg.generator.backend == "vllm" else cfg


# The paper's data files (data/ultrafeedback_gpt4turbo.jsonl, a keyword corpus) exist only where a user prepared
# them, so configs that name them are validated without reading files; tests/test_bad_inputs.py reads real ones.
@pytest.mark.parametrize("group,option", list(_group_options()))
def test_group_option_composes_and_validates(group, option):
    cfg = compose([f"{group}={option}", *COMPANIONS.get((group, option), [])])
    if (group, option) == ("model", "smollm2_135m") and "model.name_or_path" in _problems_or_none(cfg):
        # Without `bash setup.sh --smol` the one problem must be the missing wheel, with its install command.
        assert "bash setup.sh --smol" in _problems_or_none(cfg) and "1 problem(s)" in _problems_or_none(cfg)
        return
    validate(cfg, read_files=False)


def _problems_or_none(cfg) -> str:
    try:
        validate(cfg, read_files=False)
    except UserError as e:
        return str(e)
    return ""


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiment_composes_and_validates(experiment):
    from synpo.config import collect_problems
    from synpo.gguf_models import GGUF_MODELS, gguf_source

    cfg = compose_any_python([f"experiment={experiment}"])
    problems = collect_problems(cfg, read_files=False)
    gguf = cfg.model.name_or_path.removeprefix("builtin:")
    if gguf in GGUF_MODELS and isinstance(gguf_source(gguf), str):  # the model's extra is not installed here:
        assert len(problems) == 1 and "setup.sh --smol" in problems[0], problems  # that alone, and how to fix it
    else:
        assert problems == []
    lines = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert any(f"experiment={experiment}" in line for line in header), "the header must state the launch command"


def test_defaults_list_comments_every_line():
    lines = (CONF / "config.yaml").read_text().split("defaults:")[1].split("\n\n")[0].strip().splitlines()
    assert all("#" in line for line in lines)


def _problems(overrides):
    with pytest.raises(UserError) as e:
        validate(compose(overrides))
    return str(e.value)


def test_select_on_lists_its_choices_and_val_exact_needs_a_scorer_that_knows_content():
    """Beta selection is ours (the paper names no metric): the choices are named, and selecting on exact content
    is refused, with the choices left, where the scorer cannot tell content (PairRM, ArmoRM)."""
    msg = _problems(["trainer.select_on=val_loss"])
    assert "trainer.select_on" in msg and "val_exact" in msg and "val_win_rate" in msg
    msg = _problems(["trainer.select_on=val_exact", "scorer=pairrm"])
    assert "needs a scorer that knows exact content" in msg and "val_score_sampled" in msg
    validate(compose(["trainer.select_on=val_exact"]))  # the tiny world's verifier knows it


def test_nonpositive_beta_and_empty_grid():
    assert "trainer.beta=-1.0 must be > 0" in _problems(["trainer.beta=-1"])
    msg = _problems(["trainer.beta_grid=[]"])
    assert "trainer.beta_grid is empty" in msg
    msg = _problems(["trainer.beta_grid=[2,0]"])
    assert "trainer.beta_grid=[2.0, 0.0] holds values outside > 0: [0.0]" in msg


def test_gamma_and_ratio_are_exclusive():
    msg = _problems(["trainer.gamma_beta_ratio=0.5"])
    assert "give exactly one of them" in msg
    msg = _problems(["trainer.gamma=null"])
    assert "give exactly one of them" in msg
    validate(compose(["trainer.gamma=null", "trainer.gamma_beta_ratio=0.5"]))


def test_each_trainer_is_typed_by_its_own_schema():
    """trainer=simpo and trainer=dpo are entries of ``TRAINERS``: SimPO's block has gamma, DPO's has none."""
    from hydra.errors import ConfigCompositionException

    from synpo.training.config import DPOTrainerConfig, SimPOTrainerConfig

    assert OmegaConf.get_type(compose([]).trainer) is SimPOTrainerConfig
    assert OmegaConf.get_type(compose(["trainer=dpo"]).trainer) is DPOTrainerConfig
    with pytest.raises(ConfigCompositionException, match="Could not override 'trainer.gamma'"):
        compose(["trainer=dpo", "trainer.gamma=1.6"])
    assert "trainer.gamma is not a field of trainer dpo (DPOTrainerConfig)" in _problems(
        ["trainer=dpo", "+trainer.gamma=1.6"]
    )
    assert "trainer.loss='kto' is not allowed; choose one of ['dpo', 'simpo']" in _problems(["trainer.loss=kto"])


def test_all_problems_are_reported_at_once():
    msg = _problems(["trainer.beta=0", "scorer.threshold=-1", "trainer.scheduler=wavy", "method.iterations=0"])
    assert "4 problem(s)" in msg
    assert "trainer.scheduler='wavy' is not allowed; choose one of" in msg
    assert "scorer.threshold=-1" in msg and "method.iterations=0" in msg


def test_unknown_group_option_is_a_hydra_error():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="model"):
        compose(["model=gpt9"])


def test_missing_model_path():
    msg = _problems(["model.name_or_path=/nonexistent/model"])
    assert "model.name_or_path" in msg and "no config.json" in msg


def test_secrets_are_refused():
    msg = _problems(["+logger.api_key=abc123"])
    assert "logger.api_key" in msg and "WANDB_API_KEY" in msg


def test_jsonl_source_needs_a_path():
    assert "data.path is null" in _problems(["data=jsonl"])


def test_schema_rejects_wrong_types():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="trainer.beta=abc"):
        compose(["trainer.beta=abc"])


def test_run_py_is_thin():
    body = (Path(CONF).parent / "run.py").read_text()
    assert body.count("\n") < 40 and "validate(cfg)" in body and "pipeline.run(cfg)" in body


def test_armorm_needs_no_remote_code_and_other_scorers_refuse_it():
    from synpo.config import collect_problems

    problems = collect_problems(compose(["scorer=armorm"]), read_files=False)
    assert not [p for p in problems if "trust_remote_code" in p]  # implemented here (synpo/scoring/armorm.py)
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="Could not override 'scorer.trust_remote_code'"):
        compose(["scorer.trust_remote_code=true"])
    forced = _problems(["+scorer.trust_remote_code=true"])  # Hydra's own hint for that error adds the key
    assert "scorer.trust_remote_code is not a field of scorer verifier" in forced
    assert "scorer.name_or_path is null" in _problems(["scorer=reward_model"])


@pytest.mark.parametrize(
    "name,model,scorer,threshold,lr",
    [
        ("mistral_synpo", "alignment-handbook/zephyr-7b-sft-full", "pairrm", 0.20, 3e-7),
        ("llama3_synpo", "princeton-nlp/Llama-3-Base-8B-SFT", "armorm", 0.02, 6e-7),
    ],
)
def test_paper_synpo_configs_carry_the_paper_values(name, model, scorer, threshold, lr):
    """The paper's setup (its section 4.1 and appendix), value by value."""
    cfg = compose_any_python([f"experiment={name}"])
    validate(cfg, read_files=False)
    assert cfg.generator.backend == "vllm" and cfg.generator.tensor_parallel_size == 1
    assert cfg.generator.data_parallel_size == 8  # one engine per GPU
    assert cfg.model.name_or_path == model and cfg.scorer.name == scorer and cfg.scorer.threshold == threshold
    assert not cfg.scorer.get("trust_remote_code", False)  # ArmoRM runs through synpo's own implementation
    from synpo.training.config import batch_problems

    m, t, s, g = cfg.method, cfg.trainer, cfg.sft_trainer, cfg.generator
    assert (m.name, m.iterations, m.n_prompts, m.pairs_per_iteration) == ("synpo", 4, 50000, 10000)
    assert cfg.data.n_train == 18000
    assert list(t.beta_grid) == [2, 4, 6, 8, 10, 12] and t.beta is None
    assert t.gamma == 1.6 and t.gamma_beta_ratio is None and t.loss == "simpo"
    assert t.learning_rate == lr and t.epochs == 1 and t.scheduler == "cosine" and t.warmup_ratio == 0.1
    assert t.global_batch_size == 128 and not batch_problems(t, "trainer", cfg.launch)
    # every training job fits an 80 GB GPU with a quarter to spare, at its longest sequences (the plan's estimate)
    from synpo.cost import shape, training_memory_gib
    from synpo.training.config import world_size

    policy, world = shape(cfg.model.name_or_path), world_size(cfg.launch)
    for block, pairs in ((t, True), (s, False)):
        assert training_memory_gib(policy, block, world, policy["vocab"], pairs) * 2**30 < 0.75 * 80e9
    assert (s.learning_rate, s.warmup_ratio, s.epochs, s.optimizer) == (1e-6, 0.1, 3, "adamw_torch")
    assert s.global_batch_size == 32 and not batch_problems(s, "sft_trainer", cfg.launch)
    assert (s.max_length, m.improver_max_length) == (8000, 6000)
    assert (g.temperature, g.max_new_tokens) == (0.7, 2048)


@pytest.mark.parametrize("launcher", sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml")))
def test_launcher_configs_compose(launcher):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 8 and cfg.hydra.launcher.max_num_timeout > 0


def test_concurrent_candidates_need_accelerate_and_two_device_sets():
    from synpo.training.launch import device_slots

    assert "needs launch.launcher=accelerate" in _problems(["launch.concurrent_candidates=true", "launch.devices=[0]"])
    msg = _problems(["launch.concurrent_candidates=true", "launch.launcher=accelerate", "launch.devices=[0]"])
    assert "at least two disjoint sets" in msg
    cfg = compose(
        ["launch.concurrent_candidates=true", "launch.launcher=accelerate", "launch.devices=[0,1,2,3,4,5,6,7]"]
    )
    validate(cfg)
    assert device_slots(cfg.launch, 6) == [[0], [1], [2], [3], [4], [5]]
    cfg.launch.num_processes = 2
    assert device_slots(cfg.launch, 6) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    cfg.launch.concurrent_candidates = False
    assert device_slots(cfg.launch, 6) == [[0, 1, 2, 3, 4, 5, 6, 7]]
    assert "launch.devices=[-1] holds values outside >= 0" in _problems(["launch.devices=[-1]"])


def test_every_schema_field_has_help_and_sft_has_no_preference_fields():
    """Each field of every group's schema documents itself; the SFT trainer's schema has only SFT settings."""
    import dataclasses

    from synpo.config import SynpoConfig
    from synpo.training.config import SFTTrainerConfig

    assert undocumented_fields(SynpoConfig) == []
    names = {f.name for f in dataclasses.fields(SFTTrainerConfig)}
    assert not names & {"beta", "beta_grid", "gamma", "select_on", "loss", "launcher", "num_processes"}


def test_gradient_checkpointing_reaches_the_trl_arguments(tmp_path):
    """trainer.gradient_checkpointing=true turns on activation checkpointing in the TRL trainer's arguments."""
    from synpo.training.config import hparams
    from synpo.training.simpo import build_simpo_trainer

    pairs = [{"prompt": "Add the numbers 3 and 4.", "chosen": "The sum is 7.", "rejected": "8"}]
    for on in (True, False):
        cfg = compose([f"trainer.gradient_checkpointing={str(on).lower()}"])
        hp = hparams(cfg.trainer, cfg.model, cfg.launch, seed=0)
        trainer, _ = build_simpo_trainer("builtin:tiny-sft", pairs, tmp_path / str(on), hp, beta=2.0, gamma=1.6)
        assert bool(trainer.args.activation_checkpointing) is on


def test_tiny_world_values_are_named_for_another_model():
    """The table of tiny-world defaults matches conf/, and each one is named when a real model keeps it."""
    from synpo.config import TINY_WORLD_VALUES, tiny_world_values

    assert tiny_world_values(compose([])) == []
    for overrides in ([], ["experiment=tiny_spin"]):
        cfg = compose(overrides)
        for key, values in TINY_WORLD_VALUES.items():
            value = OmegaConf.select(cfg, key)
            assert value in values or (value is None and key.startswith("method.")), key  # SPIN draws no prompts
    other = compose(["model=mistral_7b_sft"])
    assert "sft_trainer.learning_rate=0.001" in tiny_world_values(other) and len(tiny_world_values(other)) == 8
    assert "method.n_prompts=600" in tiny_world_values(other)  # the paper's counts are method=synpo_paper
    assert tiny_world_values(compose(["experiment=mistral_synpo"])) == []


def test_a_real_model_with_tiny_world_settings_is_warned_about():
    from synpo.config import tiny_world_values

    stale = tiny_world_values(compose(["model=smollm2_135m"]))
    assert "sft_trainer.learning_rate=0.001" in stale and "generator.max_new_tokens=48" in stale


def undocumented_fields(schema: type, prefix: str = "") -> list[str]:
    """Fields of ``schema`` (recursively) without a help string."""
    import dataclasses
    import typing

    missing = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            missing += undocumented_fields(hints[f.name], key)
        elif not f.metadata.get("help"):
            missing.append(key)
    return missing


# --- the sweep scripts: every point of every `run.py -m` line composes and validates ----------------------------------


def _sweep_points(script: Path, env: dict) -> list[list[str]]:
    """The override lists of every point that ``script``'s ``run.py -m`` commands would launch (Hydra's launcher and
    sweep-dir keys left out)."""
    import itertools
    import shlex

    text = script.read_text().replace("\\\n", " ")
    points = []
    for line in text.splitlines():
        if "run.py -m" not in line or line.lstrip().startswith("#"):
            continue
        args = line.split("run.py -m", 1)[1].replace('"$@"', "")
        for k, v in env.items():
            args = args.replace(f'"${k}"', v).replace(f"${k}", v)
        choices = []
        for token in shlex.split(args):
            if token.startswith(("hydra/launcher=", "hydra.", "logger.mode=")):
                continue
            key, _, value = token.partition("=")
            options = [value] if value.startswith("[") else value.split(",")
            choices.append([f"{key}={o}" for o in options])
        points += [list(p) for p in itertools.product(*choices)]
    return points


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "sweeps").glob("*table*.sh")))
def test_every_point_of_the_table_sweeps_composes_and_validates(script, tmp_path):
    prefs, prompts = tmp_path / "prefs.jsonl", tmp_path / "prompts.jsonl"
    prefs.write_text(json.dumps({"prompt": "Add the numbers 1 and 2.", "chosen": "3", "rejected": "4"}) + "\n")
    prompts.write_text(json.dumps({"prompt": "Write a haiku about rain."}) + "\n")
    points = _sweep_points(ROOT / "sweeps" / script, {"PREFERENCES": str(prefs), "MANUAL_PROMPTS": str(prompts)})
    assert points, f"{script} launches no run.py -m point"
    for overrides in points:
        validate(compose_any_python(list(overrides)), read_files=False)


@pytest.mark.parametrize(
    "processes, machines, accum",
    [(1, 1, 64), (2, 1, 32), (8, 1, 8), (8, 2, 4)],  # 1, 2, 8 and 16 processes of 2 examples a pass
)
def test_the_global_batch_holds_for_any_number_of_processes(processes, machines, accum):
    """trainer.global_batch_size is what the paper states (SimPO 128, SFT 32); accumulation is derived from it."""
    from synpo.training.config import hparams, world_size

    cfg = compose(["experiment=mistral_synpo", f"launch.num_processes={processes}", f"launch.num_machines={machines}"])
    hp = hparams(cfg.trainer, cfg.model, cfg.launch, seed=0)
    assert hp.grad_accum == accum and hp.batch_size * hp.grad_accum * world_size(cfg.launch) == 128
    sft = hparams(cfg.sft_trainer, cfg.model, cfg.launch, seed=0)
    if 32 % (4 * processes * machines) == 0:
        assert sft.batch_size * sft.grad_accum * world_size(cfg.launch) == 32
    # how the batch is split is not part of the job's identity: its fingerprint stays
    one = hparams(cfg.trainer, cfg.model, compose(["experiment=mistral_synpo"]).launch, seed=0)
    assert hp.identity() == one.identity()


def test_a_global_batch_that_does_not_divide_is_refused_with_the_arithmetic():
    from synpo.training.config import batch_problems

    cfg = compose(["experiment=mistral_synpo", "trainer.batch_size=3"])
    [problem] = batch_problems(cfg.trainer, "trainer", cfg.launch)
    assert "trainer.global_batch_size=128 is not a multiple of trainer.batch_size=3 x 8 process(es)" in problem
    assert "= 24: set trainer.batch_size=2" in problem
    cfg = compose(["experiment=zephyr_spin", "launch.num_processes=128"])  # 128 GPUs: more than 64 examples
    assert "choose a global batch" in batch_problems(cfg.trainer, "trainer", cfg.launch)[0]
    cfg = compose(["experiment=mistral_synpo", "trainer.grad_accum=8"])
    assert "the accumulation is derived" in batch_problems(cfg.trainer, "trainer", cfg.launch)[0]
    # concurrent candidates, one GPU each: every candidate still trains on 128 per step
    cfg = compose(["experiment=mistral_synpo", "launch.num_processes=1", "launch.concurrent_candidates=true"])
    from synpo.training.config import hparams

    assert hparams(cfg.trainer, cfg.model, cfg.launch, seed=0).grad_accum == 64


def test_each_registry_checks_the_option_and_that_its_yaml_named_its_schema():
    """A method, scorer or backend block is typed by its option's own schema: an unknown option, a block that no
    YAML typed (a user's new option without `defaults: [schema_<name>, _self_]`) and a key added with Hydra's
    `+key=` are each one sentence."""
    from omegaconf import OmegaConf

    from synpo.config import collect_problems
    from synpo.methods.spin import SpinConfig
    from synpo.methods.synpo import SynPOConfig

    cfg = compose([])
    assert OmegaConf.get_type(cfg.method) is SynPOConfig
    assert OmegaConf.get_type(compose(["method=spin_judged"]).method) is SpinConfig
    assert "method.name='nope' is not allowed" in _problems(["method.name=nope"])
    OmegaConf.set_struct(cfg, False)
    cfg.method = OmegaConf.create(OmegaConf.to_container(cfg.method))  # the same values, no schema
    [problem] = [p for p in collect_problems(cfg, read_files=False) if p.startswith("method.")]
    assert "names no schema, not SynPOConfig" in problem and "defaults: [schema_synpo, _self_]" in problem
    assert "method.n_prompts is not a field of method spin (SpinConfig)" in _problems(
        ["method=spin", "+method.n_prompts=3"]
    )


@pytest.mark.parametrize("experiment", ["mistral_synpo", "llama3_synpo", "zephyr_spin", "llama2_spin"])
def test_every_paper_scale_value_says_where_it_comes_from(experiment):
    """Issue 24 item 4: in the paper-scale experiment files every value of a result-changing block carries a comment
    (the paper, its appendix, the SimPO or SPIN repo, or "ours"); the launch block's comment covers its lines."""
    blocks = ("scorer", "generator", "trainer", "sft_trainer", "method", "model", "eval")
    block, bare = None, []
    for line in (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            block = line.split(":")[0]
        elif block in blocks and line.startswith("  ") and ": " in line and "#" not in line:
            bare.append(f"{block}.{line.strip()}")
    assert bare == []
