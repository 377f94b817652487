"""Training jobs on TRL: SFT (prompt generator, improver, the tiny SFT model) and SimPO/DPO preference training."""
