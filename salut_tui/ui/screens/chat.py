"""Chat: a playground that talks to any model through `Node.generate`, the API's own path.

The prompt is a multi-line editor: enter starts a new line (a pasted prompt keeps all its lines)
and ctrl+s sends. Terminals differ in what they deliver for ctrl+enter (most send a plain
enter), so ctrl+enter, alt+enter and ctrl+j send too where they arrive, and so does the Send
button. While an answer is written, a 4 Hz timer reads the node's stream record (tok/s, which
node serves it) and the model's load progress; tokens go to the Markdown stream, which batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from contextlib import aclosing

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Markdown, Select, Static, TextArea
from textual.worker import Worker

from salut_tui.engine.types import Error, Finish, GenerationRequest, Token
from salut_tui.ui.format import Figures, printable
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.state import LoadState, StreamRecord
from salut_tui.ui.widgets.confirm import Confirm
from salut_tui.ui.widgets.sampling import SamplingBar

log = logging.getLogger(__name__)

PLAYGROUND_CLIENT = "playground"
PROGRESS_INTERVAL = 0.25


class ChatScreen(NodeScreen):
    SCREEN_TITLE = "Chat"
    HINT = "ctrl+s send · enter newline · esc stop/leave · ctrl+n new · y copy · ? keys"
    TOPICS = frozenset({"models"})
    BINDINGS = [
        # Not a priority binding: the key then waits behind the keys typed before it (they
        # go to the editor first), so a fast typist's last characters are sent too.
        Binding("ctrl+s,ctrl+enter,alt+enter,ctrl+j", "send", "Send"),
        Binding("escape", "stop", "Stop / leave field"),
        Binding("ctrl+n", "new_chat", "New chat"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, str]] = []
        self.model: str | None = None  # the model this conversation is with
        self._worker: Worker | None = None
        self._progress: Timer | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-model-row"):
            yield Label("model  ", classes="sampling-label")
            yield Select([], id="chat-model", compact=True, prompt="choose a model")
        yield SamplingBar(id="sampling")
        with Horizontal(id="chat-system-row"):
            yield Label("system ", classes="sampling-label")
            yield Input(id="system-prompt", compact=True, placeholder="optional system prompt")
        yield VerticalScroll(id="conversation")
        yield Static("", id="chat-status")
        with Horizontal(id="prompt-row"):
            yield TextArea(
                id="prompt",
                compact=True,
                soft_wrap=True,
                show_line_numbers=False,
                placeholder="Ask something · enter new line · ctrl+s sends",
            )
            yield Button("Send", id="send", compact=True, variant="primary")

    def on_mount(self) -> None:
        # A blinking cursor is drawn or not depending on when the picture is taken.
        self.query_one("#prompt", TextArea).cursor_blink = not self.figures.mask_volatile

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.query_one("#prompt").focus()  # coming to Chat means coming to type

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Send prompt", "Send what the prompt holds", self.action_send)
        if self.history:
            yield SystemCommand("New chat", "Forget the conversation", self.action_new_chat)
        if self.generating:
            yield SystemCommand("Stop generation", "Stop the answer being written", self.stop)

    def copy_offer(self) -> tuple[str, str] | None:
        answers = [m["content"] for m in self.history if m["role"] == "assistant"]
        return ("the last answer", answers[-1]) if answers else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a field has the focus the digits type text, so the footer shows the chat keys
        # instead; elsewhere it has room only for the screen keys.
        if action in ("stop", "new_chat", "send"):
            return self.generating or isinstance(self.focused, Input | TextArea)
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
        # New options, the same choice: no Changed for it. A redraw re-posting the choice
        # while it differs from the conversation's model (a switch being asked about) would
        # ask again.
        with self.prevent(Select.Changed):
            select.set_options([(model_id, model_id) for model_id in ids])
            if current in ids:
                select.value = current
        if current not in ids:
            loaded = [m.id for m in models if m.loaded]
            select.value = loaded[0] if loaded else default

    def set_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#chat-status", Static)
        status.set_class(error, "error")
        status.update(escape(text))

    # ---- switching models --------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "chat-model" or not isinstance(event.value, str):
            return
        chosen, before = event.value, self.model
        if before is None or chosen == before or not (self.history or self.generating):
            self.model = chosen
            return

        async def answered(fresh: bool | None) -> None:
            if fresh:
                self.model = chosen
                await self.action_new_chat()
                self.set_status(f"New chat with {chosen}.")
            else:
                self.query_one(
                    "#chat-model", Select
                ).value = before  # keep talking to the same model

        self.app.push_screen(
            Confirm(
                f"Start a new chat with {chosen}?",
                f"This conversation is with {before}; a model does not read another's chat.",
                yes="New chat",
                no=f"Keep {before}",
            ),
            answered,
        )

    # ---- sending -----------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            event.stop()
            self.run_worker(self.action_send(), exit_on_error=False)

    async def action_send(self) -> None:
        prompt = self.query_one("#prompt", TextArea)
        text = prompt.text.strip()
        if not text or self.generating:
            return
        model = self.query_one("#chat-model", Select).value
        if not isinstance(model, str):
            self.set_status("Choose a model first.", error=True)
            return
        try:
            sampling = self.query_one(SamplingBar).params()
        except ValueError as exc:
            self.set_status(str(exc), error=True)
            return
        prompt.clear()
        self.model = model
        self.history.append({"role": "user", "content": text})
        system = self.query_one("#system-prompt", Input).value.strip()
        messages = ([{"role": "system", "content": system}] if system else []) + self.history
        request = GenerationRequest(
            model=model,
            messages=tuple(dict(m) for m in messages),
            sampling=sampling,
            client=PLAYGROUND_CLIENT,
        )
        conversation = self.query_one("#conversation", VerticalScroll)
        label = Static(f"[b]{escape(model)}[/]", classes="turn-label")
        answer = Markdown(classes="assistant")
        await conversation.mount_all(
            [
                Static("[b]You[/]", classes="turn-label user-label"),
                Static(escape(text), classes="user"),
                label,
                answer,
            ]
        )
        conversation.anchor()
        self._progress = self.set_interval(
            PROGRESS_INTERVAL, lambda: self._show_progress(request, label)
        )
        self._show_progress(request, label)
        self._worker = self.run_worker(self._answer(request, answer, label), exit_on_error=False)
        self.refresh_bindings()

    def _show_progress(self, request: GenerationRequest, label: Static) -> None:
        """The status line and the answer's label while it is written (4 Hz, not per token)."""
        record = self.state.streams.records.get(request.request_id)
        load = self.state.models.loads.get(request.model)
        self.set_status(progress_line(request.model, record, load, self.figures))
        if record is not None:
            rate = self.figures.rate(record.tokens_per_second(time.monotonic()))
            label.update(answer_label(record, rate))

    async def _answer(self, request: GenerationRequest, answer: Markdown, label: Static) -> None:
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
            if self._progress is not None:
                self._progress.stop()
            await stream.stop()
            if parts:
                self.history.append({"role": "assistant", "content": "".join(parts)})
            self.set_status(outcome, error=outcome.startswith("error"))
            self._final_label(request, label, outcome)
            self.call_after_refresh(self.refresh_bindings)

    def _final_label(self, request: GenerationRequest, label: Static, outcome: str) -> None:
        record = self.state.streams.records.get(request.request_id)
        if record is None:  # refused before it started (an unknown model, a failed load)
            label.update(f"[b]{escape(request.model)}[/] [dim]{escape(outcome)}[/]")
            return
        finished = record.finished
        end = outcome.split(" · ")[0] if finished is None else finished.finish_reason
        rate = self.figures.rate(record.tokens_per_second(time.monotonic()))
        label.update(answer_label(record, rate, end))

    # ---- keys --------------------------------------------------------------------------
    def stop(self) -> None:
        if self.generating and self._worker is not None:
            self._worker.cancel()

    def action_stop(self) -> None:
        """Escape: stop the answer being written; with nothing running, leave the field."""
        if self.generating:
            self.stop()
        elif self.focused is not None:
            self.set_focus(None)

    async def action_new_chat(self) -> None:
        self.stop()
        self.history.clear()
        await self.query_one("#conversation", VerticalScroll).remove_children()
        self.set_status("New chat.")
        self.query_one("#prompt").focus()


def progress_line(
    model: str, record: StreamRecord | None, load: LoadState | None, figures: Figures
) -> str:
    """What the status line says while an answer is on its way: the model's load progress
    until the stream starts (the node loads a model on first use), then who writes how fast."""
    if record is None:
        if load is not None and not load.done:
            stage = f" · {load.stage}" if load.stage else ""
            return f"loading model {model}… {load.fraction:.0%}{stage} (escape stops)"
        return f"waiting for {model}… (escape stops)"
    where = f"{model} on {record.served_by}"
    if record.completion_tokens == 0:
        return f"{where} is reading the prompt… (escape stops)"
    rate = figures.rate(record.tokens_per_second(time.monotonic()))
    return f"{where} is writing… {record.completion_tokens} tokens · {rate} tok/s (escape stops)"


def answer_label(record: StreamRecord, rate: str, end: str = "") -> str:
    """The line above an answer: which model, served by which node, how many tokens how fast."""
    tail = f" · {end}" if end else ""
    return (
        f"[b]{escape(record.model)}[/] [dim]served by {escape(record.served_by)} · "
        f"{record.completion_tokens} tokens · {rate} tok/s{escape(tail)}[/]"
    )
