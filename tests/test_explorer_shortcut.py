"""The explorer's JSON shortcut (explorer/shortcut.py) as an ASGI middleware, around a stand-in app."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse

from latent_atlas.explorer.shortcut import JsonShortcut, Shortcut


class Numbers(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    values: list[float]


class Total(BaseModel):
    total: float
    client: list


class Refused(Exception):
    """An error the app has a handler for (like a run that cannot be served)."""


class Narrower(Refused):
    pass


async def refused(request: Request, exc: Refused) -> JSONResponse:
    return JSONResponse({"refused": str(exc), "path": request.url.path}, status_code=409)


async def add_up(request: Numbers, client) -> Total:
    assert isinstance(client, tuple)  # hashable, whatever sequence the server gave
    if not request.values:
        raise Narrower("nothing to add")
    if len(request.values) > 3:
        raise KeyError("a bug")
    return Total(total=sum(request.values), client=list(client))


class UsualWay:
    """The app behind the shortcut: records the body it reads, answers 299 with it."""

    def __init__(self):
        self.bodies: list[bytes] = []  # each whole body read
        self.chunks: list[bytes] = []  # each chunk, as read

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            self.chunks.append(message.get("body", b""))
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": body})


def call(app, chunks: list[bytes], method: str = "POST", path: str = "/sum",
         content_type: bytes | None = b"application/json", fail_at: int | None = None,
         client=("127.0.0.1", 5000)) -> tuple[int, bytes]:
    """Send one request made of ``chunks`` (``fail_at``: receive raises instead of giving that chunk)."""
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                for i, chunk in enumerate(chunks)]
    sent = []
    calls = 0

    async def receive():
        nonlocal calls
        calls += 1
        if fail_at is not None and calls - 1 == fail_at:
            raise OverflowError("too much")
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    headers = [] if content_type is None else [(b"content-type", content_type)]
    scope = {"type": "http", "method": method, "path": path, "headers": headers, "client": client}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture
def usual():
    return UsualWay()


@pytest.fixture
def app(usual):
    return JsonShortcut(usual, {"/sum": Shortcut(Numbers, add_up, TypeAdapter(Total))}, {Refused: refused})


def test_a_known_path_is_answered_by_the_shortcut_from_the_whole_body(app, usual):
    status, body = call(app, [b'{"values": [1', b".5, 2,", b" 3]}"])
    assert status == 200 and json.loads(body) == {"total": 6.5, "client": ["127.0.0.1", 5000]}
    assert usual.bodies == []  # the app behind never saw it


@pytest.mark.parametrize("chunks", [[b'{"values": [true]}'], [b'{"values": [1], "x": 0}'], [b"{"], [b"\xff"],
                                    [b"[" * 100_000 + b"]" * 100_000]],
                         ids=["rejected by the model", "extra field", "not JSON", "not UTF-8", "too deep"])
def test_what_the_shortcut_cannot_read_reaches_the_app_with_the_body_as_sent(app, usual, chunks):
    status, body = call(app, chunks)
    assert status == 299 and body == b"".join(chunks) and usual.bodies == [b"".join(chunks)]


def test_an_error_while_answering_gets_the_apps_handler_for_it_and_nothing_is_computed_twice(app, usual):
    status, body = call(app, [b'{"values": []}'])
    assert status == 409 and json.loads(body) == {"refused": "nothing to add", "path": "/sum"}
    assert usual.bodies == []


def test_an_error_no_handler_claims_propagates_like_any_routes(app, usual):
    with pytest.raises(KeyError, match="a bug"):
        call(app, [b'{"values": [1, 2, 3, 4]}'])
    assert usual.bodies == []


def test_a_client_address_given_as_a_list_reaches_the_answer_as_a_tuple(app):
    scope_client = ["127.0.0.1", 5000]  # the ASGI spec allows any two-item iterable
    status, body = call(app, [b'{"values": [1]}'], client=scope_client)
    assert status == 200 and json.loads(body)["client"] == scope_client


@pytest.mark.parametrize("request_kind", [{"method": "GET"}, {"path": "/other"}, {"content_type": b"text/plain"},
                                          {"content_type": b"application/json; charset=utf-8"}, {"content_type": None}],
                         ids=["GET", "another path", "text", "a charset parameter", "no content type"])
def test_other_requests_go_the_usual_way_untouched(app, usual, request_kind):
    status, body = call(app, [b'{"values": [1, 2]}'], **request_kind)
    assert status == 299 and body == b'{"values": [1, 2]}'


def test_an_error_while_reading_is_raised_again_to_the_app_after_the_chunks_read(app, usual):
    """The body size limit outside raises from ``receive``: the app behind must see the same, to answer it."""
    with pytest.raises(OverflowError, match="too much"):
        call(app, [b'{"values": ', b"[1]}", b""], fail_at=1)
    assert usual.chunks == [b'{"values": '] and usual.bodies == []  # the chunk read, then the error
