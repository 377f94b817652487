"""The tiny SFT checkpoint's build script is reproducible: the same seed gives byte-identical weights."""

import hashlib
import json

import pytest

from synpo.tinyworld.build_sft import main


@pytest.mark.slow
def test_build_sft_is_reproducible(tmp_path):
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        main(["--out", str(out), "--steps", "3", "--examples", "800", "--seed", "5"])
        digests.append(
            [hashlib.sha256((out / f).read_bytes()).hexdigest() for f in ("model.safetensors", "tokenizer.json")]
        )
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["steps"] == 3 and set(manifest["accuracy"]) == {
            "reverse",
            "sort",
            "add",
            "count",
            "uppercase",
            "largest",
        }
    assert digests[0] == digests[1]
