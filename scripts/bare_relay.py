"""The yardstick for scripts/bench.py: a bare aiohttp + uvloop relay that does nothing else.

No auth, no pool, no logging, no failover (a /health for the benchmark to wait on): it
forwards /v1/chat/completions,
/v1/messages and /v1beta/models/{model}:{method} to the first openai-custom /
claude-custom / gemini-custom instance of a pool file and
relays the answer (a stream chunk by chunk). Whatever the proxy costs above this is the
price of being a proxy rather than a pipe.

    python scripts/bench.py --proxy-cmd \
        "{python} scripts/bare_relay.py --pools {pools} --port {port}"
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _relay(
    session_box: list[aiohttp.ClientSession], url: str, headers: dict[str, str]
) -> Handler:
    """Relays to `url`, with `{tail}` and `{query}` filled from the client's request."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session = session_box[0]
        target = url
        if "{" in url:
            query = f"?{request.query_string}" if request.query_string else ""
            target = url.format(tail=request.match_info["tail"], query=query)
        async with session.post(target, data=body, headers=headers) as up:
            if up.content_type != "text/event-stream":
                data = await up.read()
                return web.Response(
                    body=data, status=up.status, content_type=up.content_type
                )
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    return handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pools", required=True)
    parser.add_argument("--port", type=int, required=True)
    args, _ = parser.parse_known_args()
    pools = json.loads(Path(args.pools).read_text())
    openai = pools["openai-custom"][0]
    claude = pools["claude-custom"][0]
    gemini = pools["gemini-custom"][0]
    box: list[aiohttp.ClientSession] = []

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        box.append(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
            )
        )
        yield
        await box[0].close()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", health)
    app.router.add_post(
        "/v1/chat/completions",
        _relay(
            box,
            openai["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions",
            {
                "Authorization": f"Bearer {openai['OPENAI_API_KEY']}",
                "Content-Type": "application/json",
            },
        ),
    )
    app.router.add_post(
        "/v1/messages",
        _relay(
            box,
            claude["CLAUDE_BASE_URL"].rstrip("/") + "/messages",
            {
                "x-api-key": claude["CLAUDE_API_KEY"],
                "anthropic-version": "2023-06-01",
                "Content-Type": "application/json",
            },
        ),
    )
    app.router.add_post(
        "/v1beta/models/{tail}",
        _relay(
            box,
            gemini["GEMINI_BASE_URL"].rstrip("/") + "/models/{tail}{query}",
            {
                "x-goog-api-key": gemini["GEMINI_API_KEY"],
                "Content-Type": "application/json",
            },
        ),
    )
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
