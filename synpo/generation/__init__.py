"""Generation backends behind the ``Generator`` protocol (``protocol.py``); ``config.py`` registers them
(``GENERATORS``) and builds the configured one (``make_generator``). The vLLM worker imports this package in an
environment without omegaconf, so nothing here imports it."""

from __future__ import annotations

from synpo.generation.protocol import Generator

__all__ = ["Generator"]
