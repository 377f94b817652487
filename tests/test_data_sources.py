"""The paper's inputs from where researchers keep them: UltraFeedback-style seed rows (a prompt column and a chosen
chat) and a keyword corpus streamed from a datasets source, both read here from local files in the hub's layout."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import compose

from synpo.data import load_hf_seed
from synpo.errors import UserError
from synpo.keywords import hf_keyword_rows


def _ultrafeedback_like(root):
    """``data/train_prefs-00000-of-00001.parquet`` as ultrafeedback_binarized lays it out."""
    rows = [
        {
            "prompt": f"Explain topic {i}.",
            "chosen": [
                {"role": "user", "content": f"Explain topic {i}."},
                {"role": "assistant", "content": f"Topic {i} is X."},
            ],
            "rejected": [{"role": "user", "content": f"Explain topic {i}."}, {"role": "assistant", "content": "No."}],
        }
        for i in range(6)
    ]
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "train_prefs-00000-of-00001.parquet")
    return root


def test_ultrafeedback_rows_give_the_prompt_and_the_chosen_answer(tmp_path):
    root = _ultrafeedback_like(tmp_path / "uf")
    rows = load_hf_seed(str(root), "train_prefs", None, "prompt", "chosen")
    assert rows[0] == {"prompt": "Explain topic 0.", "answer": "Topic 0 is X."} and len(rows) == 6


def test_keyword_lists_stream_from_a_datasets_source(tmp_path):
    root = tmp_path / "web"
    (root / "data").mkdir(parents=True)
    docs = [
        {"content": f"Rivers carry sediment toward deltas near {i}.\n\nMountains erode slowly under glaciers."}
        for i in range(30)
    ]
    (root / "data" / "train-00000-of-00001.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    d = compose(["data.keywords=hf", f"data.keyword_hf_name={root}", "data.keyword_lists=7"]).data
    rows = hf_keyword_rows(d, seed=1)
    assert len(rows) == 7 and all(len(r["keywords"]) == 3 for r in rows)
    assert hf_keyword_rows(d, seed=1) == rows  # the same stream order for the same seed
    bad = compose(["data.keywords=hf", f"data.keyword_hf_name={root}", "data.keyword_hf_field=text"]).data
    with pytest.raises(UserError, match="no paragraph of column 'text'"):
        hf_keyword_rows(bad, seed=1)
    missing = compose(["data.keywords=hf", f"data.keyword_hf_name={tmp_path}/nowhere"]).data
    with pytest.raises(UserError, match="could not be streamed"):
        hf_keyword_rows(missing, seed=1)


def test_the_hub_option_reads_its_seed_rows_through_the_registry(tmp_path):
    """``data=ultrafeedback_hf`` (the paper's seed set on the hub) pointed at the local copy: the seed stage reads the
    prompts and the chosen chats' answers through its data source, and splits them."""
    from synpo.artifacts import RunDir, read_jsonl
    from synpo.data import prepare_seed

    root = _ultrafeedback_like(tmp_path / "uf")
    cfg = compose(["data=ultrafeedback_hf", f"data.hf_name={root}", "data.n_train=4", "data.n_val=2"])
    run = RunDir(tmp_path / "run")
    prepare_seed(cfg.data, cfg.seed, run)
    train, val = (read_jsonl(f) for f in run.seed_files)
    assert (len(train), len(val)) == (4, 2)
    assert all(
        r["answer"] == r["prompt"].replace("Explain topic", "Topic").replace(".", " is X.") for r in train + val
    )


def test_each_source_is_an_option_with_its_own_fields():
    """A source is chosen with the group (``data=jsonl``): its fields are the schema's, and setting ``data.source``
    on another option's block is refused with that advice instead of running with fields no source reads."""
    from hydra.errors import ConfigCompositionException

    from synpo.config import collect_problems
    from synpo.data import DATA_SOURCES, DataConfig
    from synpo.worlds import PROVIDERS

    assert set(PROVIDERS) | {"jsonl", "hf"} == set(DATA_SOURCES)
    assert all(issubclass(DATA_SOURCES[name].schema, DataConfig) for name in DATA_SOURCES)
    with pytest.raises(ConfigCompositionException):  # the world's block has no path
        compose(["data.path=seed.jsonl"])
    problems = collect_problems(compose(["data.source=jsonl"]), read_files=False)
    assert any(p.startswith("data.source='jsonl'") and "data=<option>" in p for p in problems), problems
