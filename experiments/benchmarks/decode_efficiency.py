"""The share of the decode roofline a vLLM run reached, from a ``vllm bench serve`` (``benchmark_serving.py``) result:
its per-request prompt and answer lengths, run through ``synpo.cost.decode_roofline_seconds`` on one H100 at its
limits, against the duration the benchmark measured. The plan's ``decode_efficiency`` is this figure; measure it on
your own node and set ``assume.decode_efficiency=<it>`` to price a run on it.

    python experiments/benchmarks/decode_efficiency.py result.json --model mistralai/Mistral-7B-Instruct-v0.3 \\
        --max-num-seqs 256

The result file needs ``input_lens``, ``output_lens`` and ``duration`` (what ``--save-result`` writes); ``--model``
is a hub id the plan knows (``synpo.cost.KNOWN``) or a local model directory. Requests that returned no token are
left out (their prompt was refused). Only an H100 SXM's limits are modelled (989 TFLOP/s bf16, 3.35 TB/s).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synpo.cost import Assumptions, decode_roofline_seconds, shape
from synpo.errors import UserError


def efficiency(result: dict, model: dict, max_num_seqs: int) -> dict:
    """The roofline seconds of the benchmark's requests and their share of its measured duration."""
    missing = [k for k in ("input_lens", "output_lens", "duration") if k not in result]
    if missing:
        raise UserError(f"the result has no {', '.join(missing)}: give a `vllm bench serve --save-result` file")
    if len(result["input_lens"]) != len(result["output_lens"]):
        raise UserError("the result's input_lens and output_lens differ in length: it is not one benchmark's")
    pairs = list(zip(result["input_lens"], result["output_lens"], strict=True))
    requests = [(p, n, 1) for p, n in pairs]
    a = Assumptions(max_num_seqs=max_num_seqs)
    bound = decode_roofline_seconds(model, requests, a)
    answered = [n for n in result["output_lens"] if n > 0]
    return {
        "requests": len(answered),
        "prompt_tokens": sum(p for p, n in pairs if n > 0),
        "answer_tokens": sum(answered),
        "duration_s": result["duration"],
        "roofline_s": bound,
        "decode_efficiency": bound / result["duration"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        try:
            result = json.loads(args.result.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{args.result}: not a readable JSON benchmark result ({e})") from None
        out = efficiency(result, shape(args.model), args.max_num_seqs)
    except UserError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
