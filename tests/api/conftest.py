"""Fixtures of the API tests: one real workspace per session (api_workspace.py) and a
test client of the app over it with writes off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_workspace import TOKEN_ENV, Workspace, build_workspace
from fastapi.testclient import TestClient

from ewspipe.api.app import create_app


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("api"))


@pytest.fixture
def client(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with writes off (no token variable)."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with TestClient(create_app(workspace.settings)) as c:
        yield c
