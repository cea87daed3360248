"""The client's pure parts: SSE parsing, the 503 retry policy, the error mapping, and the
`run` command's inputs (language guess, test pairs)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bgcompiler.api.v1_schemas import LanguageOut
from bgcompiler.client._wire import raise_for_answer, retry_delay
from bgcompiler.client.errors import NotFound, RequestRejected, ServiceUnavailable
from bgcompiler.client.inputs import InputError, guess_language, read_tests
from bgcompiler.client.sse import RawEvent, SseParser


def test_sse_events_end_at_blank_lines_and_comments_are_skipped() -> None:
    """Fields gather until a blank line; multi-line data is joined by newlines; `: ping`
    keep-alives and a lone blank line make no event."""
    parser = SseParser()
    lines = [": ping", "", "id: 7", "event: run", 'data: {"a":', "data: 1}", "", ""]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert events == [RawEvent("7", "run", '{"a":\n1}')]


def _answer(status: int, headers: dict[str, str] | None = None, **body: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json=body or None)


def test_a_503_is_retried_after_its_retry_after_within_bounds() -> None:
    """The server's delay is used as given; none without a 503, after the last retry, or
    when the server asks for more than the client will wait."""
    busy = _answer(503, {"Retry-After": "2"})
    assert retry_delay(busy, attempt=0, retries=3, max_wait=30) == 2
    assert retry_delay(busy, attempt=3, retries=3, max_wait=30) is None
    assert retry_delay(busy, attempt=0, retries=3, max_wait=1) is None
    assert retry_delay(_answer(429, {"Retry-After": "2"}), 0, 3, 30) is None
    assert retry_delay(_answer(503), attempt=0, retries=3, max_wait=30) == 1


def test_error_answers_become_the_client_tree_named_by_the_server_code() -> None:
    """4xx: RequestRejected (404: NotFound) with code, message and field; 503:
    ServiceUnavailable with its Retry-After; a body that is not ours still names the status."""
    with pytest.raises(RequestRejected) as rejected:
        raise_for_answer(_answer(422, error="invalid_request", message="bad", field="count"))
    assert (rejected.value.code, rejected.value.message, rejected.value.field) == (
        "invalid_request",
        "bad",
        "count",
    )
    with pytest.raises(NotFound):
        raise_for_answer(_answer(404, error="not_found", message="no job"))
    with pytest.raises(ServiceUnavailable) as busy:
        raise_for_answer(_answer(503, {"Retry-After": "4"}, error="busy", message="full"))
    assert busy.value.retry_after == 4
    with pytest.raises(RequestRejected, match="http_418"):
        raise_for_answer(httpx.Response(418, text="teapot"))
    raise_for_answer(_answer(200))


def _language(name: str, file: str, present: bool = True) -> LanguageOut:
    return LanguageOut(
        name=name, version="1", image="i", file=file, compile=None, run="r", image_present=present
    )


def test_the_language_is_guessed_from_the_extension_present_images_first() -> None:
    """`.sh` is shared: the first language with its image present wins; an unknown
    extension or none at all is an error naming the way out."""
    registry = [
        _language("sh", "main.sh", False),
        _language("bash", "main.sh"),
        _language("c", "main.c"),
    ]
    assert guess_language(Path("x.sh"), registry) == "bash"
    assert guess_language(Path("dir/A.C"), registry) == "c"
    with pytest.raises(InputError, match=r"\.zz"):
        guess_language(Path("x.zz"), registry)
    with pytest.raises(InputError, match="--language"):
        guess_language(Path("Makefile"), registry)


def test_tests_are_in_out_pairs_in_name_order(tmp_path: Path) -> None:
    """Each NAME.in with its NAME.out, sorted by name; an .in without its .out fails."""
    (tmp_path / "b.in").write_text("2")
    (tmp_path / "b.out").write_text("4\n")
    (tmp_path / "a.in").write_text("1")
    (tmp_path / "a.out").write_text("2\n")
    cases = read_tests(tmp_path)
    assert [(case.stdin, case.expected_output) for case in cases] == [("1", "2\n"), ("2", "4\n")]
    (tmp_path / "c.in").write_text("3")
    with pytest.raises(InputError, match=r"c\.out"):
        read_tests(tmp_path)
