"""A short way through the web stack for the explorer's hottest request: decoding a few codes.

With 8 clients each sending single-code decodes, the event loop's thread spent about 1.1 ms of CPU per request,
0.45 ms of it in FastAPI's machinery (routing over every run's endpoints, dependency solving, parsing the body
to Python objects and validating them, validating and serialising the answer), and every round trip waits for
all of it (``benchmarks/explorer_load.py``). ``JsonShortcut`` answers the requests it knows without that
machinery: it reads the body, validates it straight from the JSON bytes with the endpoint's own request model,
calls the endpoint's own answer function and serialises the answer with its response model, so the answer is
the same, byte for byte.

Anything else takes the usual way, with the body replayed as it came: other paths and methods, a content type
other than ``application/json``, a body the request model rejects, and any error while answering. FastAPI
then answers exactly as it would have, with its 422 naming the field, or the run's 409, from the same
request, and an error raised while reading the body (the size limit's 413) is raised to FastAPI again. So the
shortcut only ever answers 200 with what the endpoint itself would have answered. It sits inside the other
middlewares (host check, body size limit, security headers), which see every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

JSON = b"application/json"


@dataclass(frozen=True)
class Shortcut:
    """How to answer one POST path: its request model, its answer function and its response model."""

    request: type[BaseModel]
    answer: Callable[[Any, Hashable], Awaitable[BaseModel]]  # (validated request, client) -> the endpoint's answer
    response: TypeAdapter

    async def __call__(self, body: bytes, client: Hashable) -> bytes:
        answer = await self.answer(self.request.model_validate_json(body), client)
        return self.response.dump_json(answer, by_alias=True)  # as FastAPI serialises a response_model


class JsonShortcut:
    """ASGI middleware: answers POST requests to the paths in ``shortcuts`` directly, everything else via ``app``."""

    def __init__(self, app: Any, shortcuts: dict[str, Shortcut]):
        self.app = app
        self.shortcuts = shortcuts

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
        answer = None
        if stopped is None and messages[-1]["type"] == "http.request":
            try:
                answer = await shortcut(b"".join(body), scope.get("client"))
            except Exception:  # noqa: BLE001 - the usual way answers it, from the same request
                answer = None
        if answer is None:
            await self.app(scope, _replay(messages, stopped, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(answer)).encode("ascii")), (b"content-type", JSON)]})
        await send({"type": "http.response.body", "body": answer})


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
