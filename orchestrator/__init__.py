"""A SQL-backed orchestrator for Anthropic's Message Batches API."""

from __future__ import annotations

__version__ = "0.1.0"
