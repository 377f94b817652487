import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose(overrides: list[str] | None = None):
    """The config that `python run.py <overrides>` would see (without Hydra's runtime-only keys)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import synpo.config  # noqa: F401  (registers the schemas)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []) + ["run_dir=/tmp/unused"])


@pytest.fixture
def composed():
    return compose
