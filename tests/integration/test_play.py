"""The playground at /play, end to end: Debian's headless Chromium, cut off from everything
but loopback, against the real service. Screenshots of each step go to the test's tmp dir
(two of them are kept in docs/screenshots for the README)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.integration.browser import Page, offline_page

pytestmark = pytest.mark.integration
runc_only = pytest.mark.parametrize("shared_server", ["runc"], indirect=True)

# Reverses its input; sleeps a little so that runs finish one by one, visibly.
REVERSE = "import time\ntime.sleep(0.15)\nprint(input()[::-1])\n"
# The same answer in fewer bytes, for compare mode.
SHORT = "print(input()[::-1])\n"
TESTS = [{"stdin": "abc", "expected_output": "cba"}, {"stdin": "xy", "expected_output": "xx"}]


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with offline_page() as opened:
        opened.call(
            "Emulation.setDeviceMetricsOverride",
            width=1200,
            height=1600,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield opened


def shoot(page: Page, path: Path) -> None:
    shot = page.call("Page.captureScreenshot", format="png")
    path.write_bytes(base64.b64decode(shot["data"]))


def type_code(page: Page, entry: int, code: str) -> None:
    """Empties an entry's editor, focuses it and types the code into it (the browser's own
    text input, as a keyboard or an input method would give it)."""
    page.evaluate(f"""(() => {{
        const editor = document.querySelectorAll('#entries .editor')[{entry}].editor;
        editor.text = '';
        editor.focus();
    }})()""")
    page.call("Input.insertText", text=code)


def codes(page: Page) -> list[str]:
    texts: list[str] = page.evaluate(
        "[...document.querySelectorAll('#entries .editor')].map(e => e.editor.text)"
    )
    return texts


# The colours of the word `import` and of the plain text of its line: different when the
# editor highlights Python's keywords.
KEYWORD_COLOURS = """(() => {
    const line = [...document.querySelectorAll('#entries .cm-line')]
        .find(l => l.textContent.startsWith('import'));
    const word = [...line.querySelectorAll('span')].find(s => s.textContent === 'import');
    return [word && getComputedStyle(word).color, getComputedStyle(line).color];
})()"""


def press(page: Page, key: str, code: str, keycode: int, modifiers: int = 0) -> None:
    for kind in ("keyDown", "keyUp"):
        page.call(
            "Input.dispatchKeyEvent",
            type=kind,
            key=key,
            code=code,
            windowsVirtualKeyCode=keycode,
            modifiers=modifiers,
        )


def count(page: Page, selector: str) -> int:
    value: int = page.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length")
    return value


def done(page: Page, entries: int) -> str:
    """A JS condition: that many entries' results, each showing its summary."""
    return f"document.querySelectorAll('#results .entry-result .summary').length === {entries}"


@runc_only
def test_write_run_compare_and_reload(server: Server, page: Page, tmp_path: Path) -> None:
    """Code written in the editor runs as a job on two tests; its runs appear one by one
    while the job is still running; a wrong answer shows its diff; the strip plots and
    histogram are drawn. A second entry, run by Ctrl+Enter in its editor, compares: both
    in the table with their sizes in bytes, both in the plots. The permalink reloads code,
    tests and results. Nothing is asked of any host but the service, and a narrow window
    needs no sideways scrolling."""
    page.open(f"{server.url}/play")
    assert page.wait_for("document.body.dataset.ready === 'true'"), page.evaluate(
        "document.body.innerText"
    )
    assert page.evaluate("document.querySelector('#entries select').value") == "python"
    type_code(page, 0, REVERSE)
    assert page.evaluate("document.querySelector('.bytes').textContent") == (
        f"{len(REVERSE)} bytes"
    )
    assert codes(page) == [REVERSE]
    keyword, plain = page.evaluate(KEYWORD_COLOURS)
    assert keyword is not None, "`import` is not a token of its own: no highlighting"
    assert keyword != plain
    label = page.evaluate(
        "document.querySelector('#entries .cm-content').getAttribute('aria-label')"
    )
    assert label == "Code of entry 1"
    press(page, "Tab", "Tab", 9)  # Tab leaves the editor: the page is usable by keyboard
    assert page.evaluate("document.activeElement.closest('.cm-editor') === null")
    limits = page.evaluate("fetch('/api/v1/limits').then(r => r.json())")
    assert page.evaluate("document.getElementById('count').max") == str(limits["max_runs"])
    assert page.evaluate("document.getElementById('time-ms').max") == str(limits["time_ms"])
    page.evaluate(f"""(() => {{
        document.getElementById('count').value = {limits["max_runs"] + 1};
        document.getElementById('run').click();
    }})()""")
    assert page.evaluate("document.getElementById('message').classList.contains('error')")
    assert "between 1 and" in page.evaluate("document.getElementById('message').textContent")
    assert count(page, "#results .entry-result") == 0  # refused before anything was sent
    page.evaluate(f"""(() => {{
        for (const t of {json.dumps(TESTS)}) document.getElementById('add-test').click();
        const rows = document.querySelectorAll('#tests .test');
        {json.dumps(TESTS)}.forEach((t, i) => {{
            rows[i].querySelector('.t-in').value = t.stdin;
            rows[i].querySelector('.t-out').value = t.expected_output;
        }});
        document.getElementById('count').value = 2;
        // Live: a run row seen while its job is still running.
        window.liveRows = 0;
        new MutationObserver(() => {{
            const running = document.querySelector('#results h3 .badge.running');
            if (running && document.querySelector('#results tr.run')) window.liveRows++;
        }}).observe(document.getElementById('results'), {{childList: true, subtree: true}});
        document.getElementById('run').click();
    }})()""")
    assert page.wait_for(done(page, 1), timeout=60), page.evaluate("document.body.innerText")
    assert page.evaluate("window.liveRows") > 0
    assert count(page, "#results tr.run") == 4
    verdicts = page.evaluate(
        "[...document.querySelectorAll('#results tr.run td:nth-child(5)')].map(e => e.innerText)"
    )
    assert verdicts == ["accepted", "accepted", "wrong_answer", "wrong_answer"]
    assert page.evaluate("document.querySelector('.diff-add').textContent") == "+ yx\n"
    assert count(page, "#plots figure.strip") == 3
    assert count(page, "#plots figure.strip:first-of-type circle.point") == 4
    assert count(page, "#plots figure.histogram rect.bar") >= 1
    shoot(page, tmp_path / "play-run.png")

    page.evaluate("document.getElementById('add-entry').click()")
    type_code(page, 1, SHORT)
    press(page, "Enter", "Enter", 13, modifiers=2)  # Ctrl+Enter in the editor runs
    assert page.wait_for(done(page, 2), timeout=60), page.evaluate("document.body.innerText")
    table = page.evaluate(
        "[...document.querySelectorAll('#comparison tbody tr')].map(r => r.cells[2].innerText)"
    )
    assert table == [str(len(REVERSE)), str(len(SHORT))]
    figures = page.evaluate(
        "[...document.querySelectorAll('#comparison tbody tr')]"
        ".map(r => [3, 4, 5].map(i => r.cells[i].innerText))"
    )
    assert all(cell != "-" for row in figures for cell in row), figures  # median, p95, stdev
    colours = page.evaluate(
        "new Set([...document.querySelectorAll('#plots figure.strip circle.point')]"
        ".map(c => c.getAttribute('fill'))).size"
    )
    assert colours == 2
    assert count(page, "#plots figure.strip:first-of-type circle.point") == 8
    page.evaluate("document.getElementById('results-title').scrollIntoView()")
    shoot(page, tmp_path / "play-compare.png")

    permalink = page.evaluate("location.href")
    assert permalink.count("job=") == 2
    page.open("about:blank")
    page.open(permalink)
    assert page.wait_for(done(page, 2), timeout=30), page.evaluate("document.body.innerText")
    assert codes(page) == [REVERSE, SHORT]
    assert page.evaluate("document.querySelectorAll('#tests .t-in')[1].value") == "xy"
    assert count(page, "#results tr.run") == 8
    assert count(page, "#plots figure.strip:first-of-type circle.point") == 8
    network = [u for u in page.requested if u.startswith(("http", "ws"))]
    assert [u for u in network if not u.startswith(f"{server.url}/")] == []

    page.call(
        "Emulation.setDeviceMetricsOverride",
        width=380,
        height=900,
        deviceScaleFactor=1,
        mobile=True,
    )
    try:
        assert page.wait_for("document.documentElement.scrollWidth <= innerWidth", timeout=5)
    finally:
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=1200,
            height=1600,
            deviceScaleFactor=1,
            mobile=False,
        )
