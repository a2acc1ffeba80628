"""The API docs pages (Swagger UI at /docs, ReDoc at /redoc) reference only this server:
every script, stylesheet and icon they load is served locally with its content type, so
the pages work with no network (the browser suite renders /docs offline)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from ewspipe.api.app import DOCS_CSP, DOCS_STATIC

#: the attributes through which a page loads something, and the spec URL of each viewer
_REFS = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|\burl:\s*'([^']+)'""")

TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
         ".json": "application/json"}


def _refs(html: str) -> list[str]:
    return [a or b for a, b in _REFS.findall(html)]


@pytest.mark.parametrize(("page", "expected"), [
    ("/docs", {f"{DOCS_STATIC}/swagger-ui-bundle.js", f"{DOCS_STATIC}/swagger-ui.css",
               f"{DOCS_STATIC}/favicon.png", "/openapi.json"}),
    ("/redoc", {f"{DOCS_STATIC}/redoc.standalone.js", f"{DOCS_STATIC}/favicon.png",
                "/openapi.json"}),
])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str,
                                           expected: set[str]) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == DOCS_CSP
    assert "default-src 'self'" in DOCS_CSP and "http" not in DOCS_CSP
    html = response.text
    assert not re.findall(r"(?:https?:)?//[\w.-]+", html), \
        f"{page} names another host"
    refs = _refs(html)
    assert set(refs) == expected, refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        suffix = ref[ref.rfind("."):]
        assert asset.headers["content-type"].startswith(TYPES[suffix]), (ref, asset.headers)
        assert len(asset.content) > 1000, ref


def test_docs_assets_outside_the_bundle_are_404(client: TestClient) -> None:
    assert client.get(f"{DOCS_STATIC}/nothing.js").status_code == 404
    assert client.get(f"{DOCS_STATIC}/../app.py").status_code == 404


def test_docs_pages_stay_out_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc"} & set(paths)
    assert not any(p.startswith(DOCS_STATIC) for p in paths)


def test_docs_honour_a_root_path(workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy serving the app under a prefix, the pages ask for prefixed URLs."""
    from api_workspace import TOKEN_ENV

    from ewspipe.api.app import create_app

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with TestClient(create_app(workspace.settings), root_path="/ews") as c:
        refs = _refs(c.get("/docs").text)
    assert refs and all(r.startswith("/ews/") for r in refs), refs
