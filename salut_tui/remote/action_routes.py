"""Control routes through which an attached UI acts on the node as its in-process UI would:

    POST /salut/control/ui/chat            a generation request (`cluster/wire.py` form);
                                           NDJSON: one chunk per line, as on a peer link
    POST /salut/control/ui/models/import   {"path", "model", "dtype"}; NDJSON: progress lines,
                                           then {"path"} or {"error"}
    POST /salut/control/ui/models/pull     {"model", "from"?}: starts the copy; {"transfer": id}
                                           (its progress comes as TransferChanged events)
    POST /salut/control/ui/settings        {"changes": {key: value}}: saved into the node's own
                                           config file and applied live; what a save did
    POST /salut/control/ui/log-level       {"level": "DEBUG"}: the node's loggers at that level
                                           until the last attached UI detaches (`routes.py`)

They sit behind the control token (`routes.py`), the same trust as `salut pair`: chat needs no
API key here, as the in-process chat needs none. A chat runs through `Node.generate` like any
request, so the node publishes its stream events; the attached UI closing the stream closes
the generator, which cancels the generation on the node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from salut_tui.cluster.control_http import control_error, json_body
from salut_tui.cluster.wire import chunk_to_bytes, request_from_json
from salut_tui.config import ConfigError
from salut_tui.engine.types import Chunk, GenerationRequest, ModelError
from salut_tui.remote.wire import UI_PREFIX, progress_line
from salut_tui.settings_change import SavedSettings

log = logging.getLogger(__name__)


class ActingNode(Protocol):
    """What these routes call on the node (the composition root satisfies it)."""

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Chunk, None]: ...

    async def import_gguf(
        self,
        gguf_path: Path,
        model_id: str,
        *,
        dtype: str = ...,
        progress: Callable[[float, str], None] | None = ...,
    ) -> Path: ...

    def pull_model(self, model_id: str, peer: str | None = ...) -> str: ...

    async def change_settings(self, changes: Mapping[str, Any]) -> SavedSettings: ...

    def set_log_level(self, name: str) -> None: ...


def install_actions(app: web.Application, node: ActingNode) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            generation = request_from_json(await json_body(request))
        except (KeyError, TypeError, ValueError) as exc:
            return control_error(400, f"not a generation request: {exc}", "invalid_request")
        # The attached UI is this node's own UI: never a peer's forwarded request.
        generation = dataclasses.replace(generation, forwarded=False, bearer=None)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        try:
            async with aclosing(node.generate(generation)) as chunks:
                async for chunk in chunks:
                    await response.write(chunk_to_bytes(chunk) + b"\n")
        except ConnectionResetError:  # the UI closed the stream: aclosing ended the generation
            log.debug("attached chat %s closed by the UI", generation.request_id)
            return response
        await response.write_eof()
        return response

    async def import_gguf(request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        path, model = body.get("path"), body.get("model")
        if not isinstance(path, str) or not isinstance(model, str) or not path or not model:
            return control_error(400, "give 'path' and 'model'", "invalid_request")
        dtype = str(body.get("dtype") or "float32")
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def progress(fraction: float, stage: str) -> None:  # the MLX thread
            loop.call_soon_threadsafe(lines.put_nowait, progress_line(fraction, stage))

        task = asyncio.ensure_future(
            node.import_gguf(Path(path), model, dtype=dtype, progress=progress)
        )
        try:
            while not task.done():
                getter = asyncio.ensure_future(lines.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    await _line(response, getter.result())
                else:
                    getter.cancel()
            while not lines.empty():
                await _line(response, lines.get_nowait())
            await _line(response, _import_result(task))
        except ConnectionResetError:  # the UI went away: the import finishes on the node
            return response
        await response.write_eof()
        return response

    async def pull(request: web.Request) -> web.Response:
        body = await json_body(request)
        model, peer = body.get("model"), body.get("from")
        if not isinstance(model, str) or not model:
            return control_error(400, "give 'model'", "invalid_request")
        transfer = node.pull_model(model, str(peer) if peer else None)
        return web.json_response({"transfer": transfer})

    async def settings(request: web.Request) -> web.Response:
        changes = (await json_body(request)).get("changes")
        if not isinstance(changes, dict) or not changes:
            return control_error(400, "give 'changes': an object of settings", "invalid_request")
        try:
            saved = await node.change_settings(changes)
        except ConfigError as exc:
            return control_error(400, str(exc), "invalid_settings")
        except OSError as exc:
            return control_error(500, f"cannot write the config file: {exc}", "write_failed")
        return web.json_response(saved.to_json())

    async def log_level(request: web.Request) -> web.Response:
        level = (await json_body(request)).get("level")
        try:
            node.set_log_level(str(level))
        except ValueError as exc:
            return control_error(400, str(exc), "invalid_request")
        return web.json_response({"level": str(level).upper()})

    app.router.add_post(f"{UI_PREFIX}/chat", chat)
    app.router.add_post(f"{UI_PREFIX}/models/import", import_gguf)
    app.router.add_post(f"{UI_PREFIX}/models/pull", pull)
    app.router.add_post(f"{UI_PREFIX}/settings", settings)
    app.router.add_post(f"{UI_PREFIX}/log-level", log_level)


def _import_result(task: asyncio.Future[Path]) -> dict[str, Any]:
    """The last line of an import: where the model now is, or why it failed (in words)."""
    try:
        return {"path": str(task.result())}
    except ModelError as exc:
        return {"error": exc.to_error().body()["error"]}
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        where = f": {exc.filename}" if exc.filename else ""
        return {"error": {"message": f"{reason}{where}", "code": "import_failed"}}
    except Exception as exc:  # a GGUF it cannot convert (GGUFImportError), said in words
        log.warning("import failed", exc_info=True)
        return {"error": {"message": str(exc) or type(exc).__name__, "code": "import_failed"}}


async def _line(response: web.StreamResponse, body: Mapping[str, Any]) -> None:
    await response.write(json.dumps(body).encode() + b"\n")
