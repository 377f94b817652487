"""synpo: self-improvement of language models from synthetic preference data (SynPO, SPIN), configured by Hydra."""

__version__ = "0.1.0"
