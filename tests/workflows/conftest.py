"""Fixtures of the workflows tests: small synthetic events and a tiny event store."""

from __future__ import annotations

from modelhelpers import events, one_torch_thread, raw, tiny_store  # noqa: F401
