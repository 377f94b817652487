"""The paper's inputs from where researchers keep them: UltraFeedback-style seed rows (a prompt column and a chosen
chat) and a keyword corpus streamed from a datasets source, both read here from local files in the hub's layout."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import compose

from synpo.data import hf_keyword_rows, load_hf_seed
from synpo.errors import UserError


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
