"""Salut: a private LLM inference cluster out of the machines on a LAN."""

__version__ = "0.1.0"
