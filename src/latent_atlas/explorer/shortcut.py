"""A short way through the web stack for the explorer's hottest request: decoding a few codes.

With 8 clients each sending single-code decodes, the event loop's thread spent about 1.1 ms of CPU per request,
0.45 ms of it in FastAPI's machinery (routing over every run's endpoints, dependency solving, parsing the body
to Python objects and validating them, validating and serialising the answer), and every round trip waits for
all of it (``benchmarks/explorer_load.py``). ``JsonShortcut`` answers the requests it knows without that
machinery: it reads the body, validates it straight from the JSON bytes with the endpoint's own request model,
calls the endpoint's own answer function and serialises the answer with its response model, so the answer is
the same, byte for byte.

Anything else takes the usual way, with the body replayed as it came: other paths and methods, a content type
other than ``application/json``, and a body the request model rejects, so that FastAPI answers it exactly as
it would have (its 422 naming the field, the 400 of a body that is not JSON); an exception raised while
reading the body (the size limit's 413) is raised to FastAPI again. An error while answering is answered by
the app's own handler for it (a run that cannot be served: 409), without computing anything twice; an error
no handler claims (a bug) propagates to the outermost middleware, which answers 500 and logs it, as for any
route. The shortcut sits inside the other middlewares (host check, body size limit, security headers), which
see every request. (Byte for byte with the pinned FastAPI, which serialises a response model the same way.)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request

JSON = b"application/json"


@dataclass(frozen=True)
class Shortcut:
    """How to answer one POST path: its request model, its answer function and its response model."""

    request: type[BaseModel]
    answer: Callable[[Any, Hashable], Awaitable[BaseModel]]  # (validated request, client) -> the endpoint's answer
    response: TypeAdapter

    def parse(self, body: bytes) -> BaseModel | None:
        """The validated request, or None: FastAPI's own route then answers with its 422 or 400."""
        try:
            return self.request.model_validate_json(body)
        except Exception:  # noqa: BLE001 - invalid, not JSON, not UTF-8, too deep: FastAPI says which, as before
            return None

    async def __call__(self, request: BaseModel, client: Hashable) -> bytes:
        return self.response.dump_json(await self.answer(request, client), by_alias=True)  # as FastAPI does


class JsonShortcut:
    """ASGI middleware: answers POST requests to the paths in ``shortcuts`` directly, everything else via ``app``."""

    def __init__(self, app: Any, shortcuts: dict[str, Shortcut], handlers: Mapping[type, Callable[..., Any]]):
        self.app = app
        self.shortcuts = shortcuts
        self.handlers = handlers  # the app's exception handlers: exception class -> (request, exc) -> response

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        shortcut = self.shortcuts.get(scope.get("path", "")) if scope["type"] == "http" else None
        if shortcut is None or scope["method"] != "POST" or _content_type(scope) != JSON:
            await self.app(scope, receive, send)
            return
        messages, body, stopped = [], [], None
        try:
            while True:  # the whole body, or whatever ended it
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except Exception as exc:  # noqa: BLE001 - e.g. the body size limit outside: raised again to FastAPI
            stopped = exc
        whole = stopped is None and messages[-1]["type"] == "http.request"
        request = shortcut.parse(b"".join(body)) if whole else None
        if request is None:
            await self.app(scope, _replay(messages, stopped, receive), send)
            return
        client = scope.get("client")
        try:
            answer = await shortcut(request, None if client is None else tuple(client))  # hashable, like FastAPI's
        except Exception as exc:
            handler = _handler_for(exc, self.handlers)
            if handler is None:
                raise
            response = handler(Request(scope), exc)
            await (await response if inspect.isawaitable(response) else response)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode("ascii")), (b"content-type", JSON)]})
        await send({"type": "http.response.body", "body": answer})


def _handler_for(exc: Exception, handlers: Mapping[type, Callable[..., Any]]) -> Callable[..., Any] | None:
    """The app's handler for ``exc``'s class or its nearest base, as Starlette looks it up; not the catch-all
    for ``Exception``, which the outermost middleware applies (and logs the error)."""
    for cls in type(exc).__mro__:
        if cls in (Exception, BaseException):
            return None
        if cls in handlers:
            return handlers[cls]
    return None


def _content_type(scope: dict) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.strip().lower()
    return None


def _replay(messages: list[dict], stopped: Exception | None, receive: Any) -> Callable[[], Awaitable[dict]]:
    """A ``receive`` that gives the messages already read, then raises what stopped the reading (the body size
    limit's 413, for FastAPI to answer) or gives what the connection sends next."""
    pending = list(messages)

    async def replayed() -> dict:
        if pending:
            return pending.pop(0)
        if stopped is not None:
            raise stopped
        return await receive()

    return replayed
