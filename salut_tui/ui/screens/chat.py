"""Chat: a playground that talks to any model through `Node.generate`, the API's own path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import aclosing

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Markdown, Select, Static
from textual.worker import Worker

from salut_tui.engine.types import Error, Finish, GenerationRequest, Token
from salut_tui.ui.format import printable
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.widgets.sampling import SamplingBar

log = logging.getLogger(__name__)

PLAYGROUND_CLIENT = "playground"


class ChatScreen(NodeScreen):
    SCREEN_TITLE = "Chat"
    HINT = "enter send · escape stop / leave the prompt · ctrl+n new chat · tab next field"
    TOPICS = frozenset({"models"})
    BINDINGS = [
        Binding("escape", "stop", "Stop / leave prompt"),
        Binding("ctrl+n", "new_chat", "New chat"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, str]] = []
        self._worker: Worker | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-model-row"):
            yield Label("model ", classes="sampling-label")
            yield Select([], id="chat-model", compact=True, prompt="choose a model")
        yield SamplingBar(id="sampling")
        yield VerticalScroll(id="conversation")
        yield Static("", id="chat-status")
        yield Input(placeholder="Ask something, then enter", id="prompt")

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.query_one("#prompt").focus()  # coming to Chat means coming to type

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("New chat", "Forget the conversation", self.action_new_chat)
        yield SystemCommand("Stop generation", "Stop the answer being written", self.action_stop)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the prompt has the focus the digits type text, so the footer shows the chat
        # keys instead; elsewhere it has room only for the screen keys.
        if action in ("stop", "new_chat"):
            return self.generating or isinstance(self.focused, Input)
        return True

    @property
    def generating(self) -> bool:
        return self._worker is not None and self._worker.is_running

    def redraw(self, topics: set[Topic]) -> None:
        select = self.query_one("#chat-model", Select)
        current = select.value
        models = self.node.models()
        ids = [m.id for m in models]
        default = self.node.settings.default_model
        if default not in ids:
            ids.append(default)
        select.set_options([(model_id, model_id) for model_id in ids])
        if current in ids:
            select.value = current
        else:
            loaded = [m.id for m in models if m.loaded]
            select.value = loaded[0] if loaded else default

    def set_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#chat-status", Static)
        status.set_class(error, "error")
        status.update(escape(text))

    # ---- sending -----------------------------------------------------------------------
    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        text = event.value.strip()
        if not text or self.generating:
            return
        model = self.query_one("#chat-model", Select).value
        if model is Select.BLANK:
            self.set_status("Choose a model first.", error=True)
            return
        try:
            sampling = self.query_one(SamplingBar).params()
        except ValueError as exc:
            self.set_status(str(exc), error=True)
            return
        event.input.value = ""
        self.history.append({"role": "user", "content": text})
        request = GenerationRequest(
            model=str(model),
            messages=tuple(dict(m) for m in self.history),
            sampling=sampling,
            client=PLAYGROUND_CLIENT,
        )
        conversation = self.query_one("#conversation", VerticalScroll)
        answer = Markdown(classes="assistant")
        await conversation.mount_all([Static(escape(text), classes="user"), answer])
        conversation.anchor()
        self.set_status(f"{model} is writing… (escape stops)")
        self._worker = self.run_worker(self._answer(request, answer), exit_on_error=False)
        self.refresh_bindings()

    async def _answer(self, request: GenerationRequest, answer: Markdown) -> None:
        stream = Markdown.get_stream(answer)
        parts: list[str] = []
        outcome = "stopped"
        try:
            # Closing the generator is what cancels the request in the engine.
            async with aclosing(self.node.generate(request)) as chunks:
                async for chunk in chunks:
                    if isinstance(chunk, Token):
                        parts.append(chunk.text)
                        await stream.write(printable(chunk.text))
                    elif isinstance(chunk, Finish):
                        usage = chunk.usage
                        outcome = (
                            f"finish: {chunk.reason} · {usage.prompt_tokens} prompt + "
                            f"{usage.completion_tokens} completion tokens"
                        )
                    elif isinstance(chunk, Error):
                        outcome = f"error: {chunk.message}"
        except asyncio.CancelledError:
            outcome = "stopped"
            raise
        except Exception as exc:  # the playground reports; it never crashes the app
            log.warning("playground request failed", exc_info=True)
            outcome = f"error: {type(exc).__name__}: {exc}"
        finally:
            await stream.stop()
            if parts:
                self.history.append({"role": "assistant", "content": "".join(parts)})
            self.set_status(outcome, error=outcome.startswith("error"))
            self.call_after_refresh(self.refresh_bindings)

    # ---- keys --------------------------------------------------------------------------
    def action_stop(self) -> None:
        """Escape: stop the answer being written; with nothing running, leave the prompt."""
        if self.generating and self._worker is not None:
            self._worker.cancel()
        elif self.focused is not None:
            self.set_focus(None)

    async def action_new_chat(self) -> None:
        if self.generating and self._worker is not None:
            self._worker.cancel()
        self.history.clear()
        await self.query_one("#conversation", VerticalScroll).remove_children()
        self.set_status("New chat.")
        self.query_one("#prompt").focus()
