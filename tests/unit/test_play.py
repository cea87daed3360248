"""The playground's page and assets as the service serves them (on the fake sandbox)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Module imports between the page's scripts: `from "./x.js"`.
IMPORT = re.compile(r'from "\./([\w-]+\.js)"')
# The one URL the scripts may hold: SVG's namespace, a name that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


async def test_page_and_every_asset_it_loads_are_served(api: Callable[..., Any]) -> None:
    """/play is HTML whose stylesheet and script, and every module those scripts import,
    answer 200 from /play/assets with the right type; none names another host."""
    client = await api()
    page = await client.get("/play")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    pending = re.findall(r'(?:src|href)="/play/assets/([\w.-]+)"', page.text)
    assert sorted(pending) == ["main.js", "play.css"]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        asset = await client.get(f"/play/assets/{name}")
        assert asset.status_code == 200, name
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        assert asset.headers["content-type"].startswith(kind), name
        assert not re.findall(r"https?://", asset.text.replace(SVG_NAMESPACE, "")), name
        pending += IMPORT.findall(asset.text)
    assert {"api.js", "editor.js", "plots.js", "results.js", "diff.js"} <= seen
    # The editor's bundle, imported on demand (built by `make setup` from web/editor).
    assert 'import("./vendor/codemirror.js")' in (await client.get("/play/assets/editor.js")).text
    bundle = await client.get("/play/assets/vendor/codemirror.js")
    assert bundle.status_code == 200, "the editor bundle is not built: run make setup"
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert not re.findall(r"https?://", bundle.text.replace(SVG_NAMESPACE, ""))
    assert "export{" in bundle.text.replace(" ", "")  # an ES module (createEditor)


async def test_page_is_open_when_keys_are_required(api: Callable[..., Any]) -> None:
    """With API keys on, the page and its assets answer without a key (the user types the
    key into the page), while the API it calls still refuses a request without one."""
    client = await api(require_api_key=True)
    assert (await client.get("/play")).status_code == 200
    assert (await client.get("/play/assets/main.js")).status_code == 200
    assert (await client.get("/api/v1/languages")).status_code == 401


async def test_page_is_not_part_of_the_api_schema(api: Callable[..., Any]) -> None:
    """The OpenAPI schema lists no /play path; GET / keeps its JSON answer."""
    client = await api()
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/play")]
    assert (await client.get("/")).json() == {"status": "ok"}
