"""The Judge0 CE 1.13.1 API at the root, so that Judge0's clients work unchanged: a translator
onto the same core and the same durable jobs as /api/v1/jobs (a token is a job).

Answers are Judge0's: 201 `{"token"}`, 422 `{"field": ["message"]}`, 400 `{"error"}` for
bad `fields` or output that needs base64, 404 with an empty body for an unknown token (JSON
when the client accepts only JSON), 503 `{"error": "queue is full"}`. docs/compatibility.md
lists what differs and why.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from bgcompiler import __version__
from bgcompiler.api import judge0_docs as docs
from bgcompiler.api.admission import admit
from bgcompiler.api.auth import may_see, owner_of
from bgcompiler.api.errors import count_rejection
from bgcompiler.api.judge0_info import STATISTICS, system_info
from bgcompiler.api.judge0_plan import (
    Judge0Config,
    Judge0Invalid,
    Submission,
    build_plan,
    check_submission,
    config_of,
    judge0_languages,
    requested_language,
)
from bgcompiler.api.judge0_render import (
    CONVERSION_ERROR,
    JUDGE0,
    NotAscii,
    job_id_of,
    rendered,
    submission_fields,
    token_of,
)
from bgcompiler.api.judge0_wire import STATUSES, VERSION, FieldsError, parse_fields
from bgcompiler.api.routes import services
from bgcompiler.errors import (
    BgcError,
    Busy,
    ClientError,
    Forbidden,
    InvalidRequest,
    RateLimited,
)
from bgcompiler.jobs.service import JobService
from bgcompiler.languages import Language
from bgcompiler.services import Services
from bgcompiler.store.jobs import FINAL, JobRow

router = APIRouter(tags=["judge0"])
# Query parameters that are not submission fields.
_CONTROL = frozenset(("wait", "base64_encoded", "fields"))
WAIT_STEP_S = 60.0


def _jobs(request: Request) -> JobService:
    found: JobService = request.app.state.jobs
    return found


def _config(request: Request) -> Judge0Config:
    return config_of(services(request), callbacks=request.app.state.webhooks.enabled)


async def _present(svc: Services) -> dict[int, Language]:
    """Judge0's ids of the languages whose image is present (the engine's answers cached)."""
    return {
        judge0_id: language
        for judge0_id, language in judge0_languages(svc.languages).items()
        if await svc.can_run(language)
    }


def _error(text: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": text, **extra}, status_code=status)


def _not_found(request: Request) -> Response:
    """Judge0's 404: empty, or JSON for a client that accepts only JSON."""
    if request.headers.get("accept", "").strip() == "application/json":
        return JSONResponse({"status": 404, "error": "Not Found"}, status_code=404)
    return _empty(404)


def _empty(status: int) -> Response:
    """An answer with no body, typed text/html as Judge0's (Rails') are."""
    return Response(status_code=status, media_type="text/html")


def _unavailable(request: Request, exc: BgcError) -> JSONResponse:
    count_rejection(request, exc)
    if isinstance(exc, Busy):
        answer = _error("queue is full", 503, message=exc.message)
        answer.headers["Retry-After"] = str(exc.retry_after)
        return answer
    return _error(exc.message, 503 if exc.http_status == 503 else 500)


def _refused(exc: RateLimited | Forbidden) -> JSONResponse:
    """A key's limits, in Judge0's error shape (Judge0 has none: its clients read `error`)."""
    answer = _error(exc.message, exc.http_status)
    if isinstance(exc, RateLimited):
        answer.headers["Retry-After"] = str(exc.retry_after)
    return answer


def _field_error(exc: ClientError) -> dict[str, list[str]]:
    """One of our refusals in Judge0's 422 shape, under the field it names."""
    return {getattr(exc, "field", None) or "base": [exc.message]}


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) == "true"


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    return json.loads(raw)


def _with_query(body: Any, request: Request) -> Any:
    """Judge0 merges the query into the body's fields, the query winning."""
    if not isinstance(body, dict):
        return body
    extra = {k: v for k, v in request.query_params.items() if k not in _CONTROL}
    return {**body, **extra}


# --- submissions ---------------------------------------------------------------------------


async def _submit(
    request: Request, raw: Any, known: dict[int, Language], *, base64_encoded: bool
) -> JobRow:
    """Checks, stores and queues one submission. Judge0Invalid, or our errors. Of the
    languages `known`, only the one asked for is checked for its image: absent, it is
    unknown, as it is to GET /languages."""
    svc = services(request)
    config = _config(request)
    asked = requested_language(raw, known)
    if asked is not None and not await svc.can_run(asked):
        known = {i: language for i, language in known.items() if language is not asked}
    submission = check_submission(raw, base64_encoded=base64_encoded, config=config, known=known)
    if submission.callback_url:
        try:
            await request.app.state.webhooks.check(submission.callback_url)
        except InvalidRequest as exc:
            raise Judge0Invalid({"callback_url": [exc.message]}) from exc
    plan = await admit(request, svc, build_plan(svc, submission, known[submission.language_id]))
    return await _jobs(request).submit(
        uuid.uuid4().hex,
        plan,
        metadata=None,
        callback_url=submission.callback_url or None,
        api=JUDGE0,
        request=submission.to_json(),
        owner=owner_of(request),
    )


def _document(
    row: JobRow, languages: dict[int, Language], fields: tuple[str, ...], base64_encoded: bool
) -> dict[str, Any]:
    assert row.request is not None
    submission = Submission.from_json(row.request)
    return rendered(
        submission_fields(row, submission, languages), fields, base64_encoded=base64_encoded
    )


@router.post(
    "/submissions",
    status_code=201,
    summary="Judge0: create a submission",
    responses=docs.CREATE_RESPONSES,
    openapi_extra=docs.CREATE,
)
async def create_submission(request: Request) -> Response:
    try:
        fields = parse_fields(request.query_params.get("fields"))
    except FieldsError as exc:
        return _error(str(exc), 400)
    try:
        body = _with_query(await _body(request), request)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(f"the body is not JSON: {exc}", 400)
    base64_encoded = _flag(request, "base64_encoded")
    svc = services(request)
    try:
        svc.scheduler.check_room(1)
        known = judge0_languages(svc.languages)
        row = await _submit(request, body, known, base64_encoded=base64_encoded)
    except Judge0Invalid as exc:
        return JSONResponse(exc.errors, status_code=422)
    except (RateLimited, Forbidden) as exc:
        return _refused(exc)
    except ClientError as exc:
        return JSONResponse(_field_error(exc), status_code=422)
    except BgcError as exc:
        return _unavailable(request, exc)
    token = token_of(row.id)
    if not _flag(request, "wait"):
        return JSONResponse({"token": token}, status_code=201)
    jobs = _jobs(request)
    try:
        while row.status not in FINAL:
            row = await jobs.wait(row.id, WAIT_STEP_S)
    except BgcError as exc:
        return _unavailable(request, exc)
    try:
        return JSONResponse(_document(row, known, fields, base64_encoded), status_code=201)
    except NotAscii:
        what = CONVERSION_ERROR.format(what="this submission")
        return _error(what, 201, token=token)


@router.post(
    "/submissions/batch",
    status_code=201,
    summary="Judge0: create submissions",
    responses=docs.BATCH_CREATE_RESPONSES,
    openapi_extra=docs.BATCH_CREATE,
)
async def create_batch(request: Request) -> Response:
    try:
        body = await _body(request)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(f"the body is not JSON: {exc}", 400)
    items = body.get("submissions") if isinstance(body, dict) else None
    if not isinstance(items, list):
        items = []
    svc = services(request)
    config = _config(request)
    try:
        svc.scheduler.check_room(max(len(items), 1))
    except BgcError as exc:
        return _unavailable(request, exc)
    if len(items) > config.max_submission_batch_size:
        return _error(
            "number of submissions in a batch should be less than or equal to "
            f"{config.max_submission_batch_size}",
            400,
        )
    if not items:
        return _error("there should be at least one submission in a batch", 400)
    base64_encoded = _flag(request, "base64_encoded")
    known = judge0_languages(svc.languages)
    answers: list[dict[str, Any]] = []
    for item in items:
        try:
            row = await _submit(request, item, known, base64_encoded=base64_encoded)
        except Judge0Invalid as exc:
            answers.append(exc.errors)
            continue
        except (RateLimited, Forbidden) as exc:
            # Refused whole while nothing is stored; past that, the submissions stored
            # keep their tokens and this one (as each after it) says why it was not.
            if not any("token" in answer for answer in answers):
                return _refused(exc)
            answers.append({"error": exc.message})
            continue
        except ClientError as exc:
            answers.append(_field_error(exc))
            continue
        except BgcError as exc:
            return _unavailable(request, exc)
        answers.append({"token": token_of(row.id)})
    saved = any("token" in answer for answer in answers)
    return JSONResponse(answers, status_code=201 if saved else 422)


@router.get(
    "/submissions/batch",
    summary="Judge0: submissions by their tokens",
    responses=docs.BATCH_SHOW_RESPONSES,
    openapi_extra=docs.query("base64_encoded", "fields"),
)
async def get_batch(request: Request, tokens: str | None = None) -> Response:
    try:
        fields = parse_fields(request.query_params.get("fields"))
    except FieldsError as exc:
        return _error(str(exc), 400)
    listed = request.headers.get("tokens") or tokens or ""
    wanted = listed.strip().split(",")
    while wanted and wanted[-1] == "":
        wanted.pop()
    config = _config(request)
    if len(wanted) > config.max_submission_batch_size:
        return _error(
            "number of submissions in a batch should be less than or equal to "
            f"{config.max_submission_batch_size}",
            400,
        )
    if not wanted:
        return _error("there should be at least one submission in a batch", 400)
    base64_encoded = _flag(request, "base64_encoded")
    svc = services(request)
    languages = judge0_languages(svc.languages)
    found: list[dict[str, Any] | None] = []
    try:
        for token in wanted:
            row = await _row(request, token)
            found.append(None if row is None else _document(row, languages, fields, base64_encoded))
    except NotAscii:
        return _error(CONVERSION_ERROR.format(what="one or more submissions"), 400)
    except BgcError as exc:
        return _unavailable(request, exc)
    return JSONResponse({"submissions": found})


async def _row(request: Request, token: str) -> JobRow | None:
    job_id = job_id_of(token)
    if job_id is None:
        return None
    row = await _jobs(request).store.get(job_id)
    # Another key's submission is unknown to this one, as in GET /api/v1/jobs/{id}.
    visible = row is not None and row.api == JUDGE0 and may_see(request, row.owner)
    return row if visible else None


@router.get(
    "/submissions/{token}",
    summary="Judge0: a submission",
    responses=docs.SHOW_RESPONSES,
    openapi_extra=docs.SHOW,
)
async def get_submission(token: Annotated[str, docs.TOKEN], request: Request) -> Response:
    try:
        fields = parse_fields(request.query_params.get("fields"))
    except FieldsError as exc:
        return _error(str(exc), 400)
    try:
        row = await _row(request, token)
    except BgcError as exc:
        return _unavailable(request, exc)
    if row is None:
        return _not_found(request)
    languages = judge0_languages(services(request).languages)
    try:
        document = _document(row, languages, fields, _flag(request, "base64_encoded"))
    except NotAscii:
        return _error(CONVERSION_ERROR.format(what="this submission"), 400)
    return JSONResponse(document)


@router.get(
    "/submissions",
    summary="Judge0: every submission (needs authorization: 403)",
    responses=docs.FORBIDDEN,
)
async def list_submissions() -> Response:
    # Judge0 lists submissions only for a client with its authorization token, and has
    # none by default: every request is refused, as there.
    return _empty(403)


@router.delete(
    "/submissions/{token}",
    summary="Judge0: delete (needs authorization: 403)",
    responses=docs.FORBIDDEN,
)
async def delete_submission() -> Response:
    return _empty(403)


@router.post(
    "/authenticate",
    summary="Judge0: no authentication is configured: 200",
    responses=docs.EMPTY_OK,
)
async def authenticate() -> Response:
    return _empty(200)


@router.post(
    "/authorize",
    summary="Judge0: no authorization token is configured: 403",
    responses=docs.FORBIDDEN,
)
async def authorize() -> Response:
    return _empty(403)


# --- languages, statuses, information ------------------------------------------------------


def _sorted(languages: dict[int, Language]) -> list[tuple[int, Language]]:
    def key(item: tuple[int, Language]) -> tuple[str, int]:
        judge0_id, language = item
        assert language.judge0 is not None
        name = "".join(c for c in language.judge0.name.casefold() if c.isalnum())
        return name, judge0_id

    return sorted(languages.items(), key=key)


def _name(language: Language) -> str:
    assert language.judge0 is not None
    return language.judge0.name


@router.get(
    "/languages", summary="Judge0: the languages that can run", responses=docs.LIST_RESPONSES
)
async def languages(request: Request) -> Response:
    try:
        present = await _present(services(request))
    except BgcError as exc:
        return _unavailable(request, exc)
    return JSONResponse([{"id": i, "name": _name(lang)} for i, lang in _sorted(present)])


@router.get(
    "/languages/all",
    summary="Judge0: every language, with is_archived",
    responses=docs.LIST_RESPONSES,
)
async def all_languages(request: Request) -> Response:
    try:
        present = await _present(services(request))
    except BgcError as exc:
        return _unavailable(request, exc)
    return JSONResponse(
        [{"id": i, "name": _name(lang), "is_archived": False} for i, lang in _sorted(present)]
    )


@router.get(
    "/languages/{language_id}",
    summary="Judge0: one language",
    responses=docs.LANGUAGE_RESPONSES,
)
async def one_language(language_id: Annotated[str, docs.LANGUAGE_ID], request: Request) -> Response:
    svc = services(request)
    known = judge0_languages(svc.languages)
    language = (
        known.get(int(language_id)) if re.fullmatch(docs.LANGUAGE_ID_DIGITS, language_id) else None
    )
    try:
        if language is None or not await svc.can_run(language):
            return _not_found(request)
    except BgcError as exc:
        return _unavailable(request, exc)
    compile_cmd = (
        language.compile.replace("{file}", f"%s {language.file}") if language.compile else None
    )
    return JSONResponse(
        {
            "id": int(language_id),
            "name": _name(language),
            "is_archived": False,
            "source_file": language.file,
            "compile_cmd": compile_cmd,
            "run_cmd": language.run.replace("{file}", language.file),
        }
    )


@router.get("/statuses", summary="Judge0: the statuses, 1 to 14", responses=docs.LIST_RESPONSES)
async def statuses() -> Response:
    return JSONResponse([{"id": i, "description": text} for i, text in STATUSES.items()])


@router.get("/about", summary="Judge0: the API version it speaks", responses=docs.OBJECT_RESPONSES)
async def about() -> Response:
    return JSONResponse(
        {
            "version": VERSION,
            "homepage": None,
            "source_code": None,
            "maintainer": f"bg-compiler {__version__}, speaking Judge0 CE {VERSION}",
        }
    )


@router.get(
    "/version",
    summary="Judge0: the API version, as text",
    response_class=PlainTextResponse,
    responses=docs.TEXT_RESPONSES,
)
async def version() -> Response:
    return PlainTextResponse(VERSION)


@router.get(
    "/config_info",
    summary="Judge0: its configuration, with this server's values",
    responses=docs.OBJECT_RESPONSES,
)
async def config_info(request: Request) -> Response:
    return JSONResponse(_config(request).info())


@router.get(
    "/system_info",
    summary="Judge0: the machine (lscpu's lines, memory, swap)",
    responses=docs.OBJECT_RESPONSES,
)
async def get_system_info() -> Response:
    return JSONResponse(await system_info())


@router.get("/workers", summary="Judge0: the queue and its workers", responses=docs.LIST_RESPONSES)
async def workers(request: Request) -> Response:
    scheduler = services(request).scheduler
    busy = scheduler.busy_workers
    total = services(request).settings.workers
    return JSONResponse(
        [
            {
                "queue": VERSION,
                "size": scheduler.waiting_runs,
                "available": total,
                "idle": max(total - busy, 0),
                "working": busy,
                "paused": 0,
                "failed": 0,
            }
        ]
    )


@router.get(
    "/statistics",
    summary="Judge0: submissions per day, language and status",
    responses=docs.OBJECT_RESPONSES,
)
async def statistics(request: Request) -> Response:
    languages = judge0_languages(services(request).languages)
    fresh = request.query_params.get("invalidate_cache") == "true"
    try:
        return JSONResponse(await STATISTICS.get(_jobs(request).store, languages, fresh=fresh))
    except BgcError as exc:
        return _unavailable(request, exc)
