"""Fixtures of the data tests; the helpers themselves live in data_fixtures.py."""

from __future__ import annotations

import pytest
from data_fixtures import FakeChatServer


@pytest.fixture
def chat_server():
    """A fresh fault-injecting chat-completions server on an ephemeral port of 127.0.0.1."""
    server = FakeChatServer()
    yield server
    server.close()
