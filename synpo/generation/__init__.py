"""Generation backends behind one protocol: ``hf`` (in-process, batched) and, for scale, ``vllm`` (a child process)."""
