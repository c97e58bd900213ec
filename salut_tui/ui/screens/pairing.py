"""Pairing: trust another machine with a short code.

One card shows a code on this node (the other machine types it); the other joins a node that
shows a code: pick it from the discovered nodes or type its address, then type the code. The
join runs in a worker so the screen stays live; any `PairingError` becomes one status line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from rich.markup import escape
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from salut_tui.pairing.service import PairingError, PairingStatus
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen

log = logging.getLogger(__name__)

HELP = (
    "Pairing lets two Salut nodes trust each other: one shows a short code, the other types "
    "it, and from then on they share models and requests over an encrypted link."
)


class PairingScreen(NodeScreen):
    SCREEN_TITLE = "Pairing"
    HINT = "c new code · x cancel · tab next field · enter pick/join · esc leave field"
    TOPICS = frozenset({"pairing", "peers"})
    BINDINGS = [
        Binding("c", "new_code", "New code", show=False),
        Binding("x", "cancel_code", "Cancel code", show=False),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._addresses: dict[str, str] = {}  # discovered node id -> its address
        self._joined: str | None = None  # id of the node the last join here paired with

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="pairing"):
            yield Static("", id="pairing-state")
            with Vertical(id="host-card", classes="card"):
                yield Static("", id="pair-code")
                yield Static("", id="pair-limit", classes="dim")
                yield Static("", id="host-status")
                with Horizontal(classes="buttons"):
                    yield Button("New code (c)", id="pair-new", compact=True, variant="primary")
                    yield Button("Cancel code (x)", id="pair-cancel", compact=True)
            with Vertical(id="join-card", classes="card"):
                yield Static("", id="pair-discovered-label", classes="dim")
                yield OptionList(id="pair-peers", compact=True)
                with Horizontal(classes="setting-row"):
                    yield Label("Address", classes="pair-label")
                    yield Input(
                        id="pair-address",
                        compact=True,
                        placeholder="host:port, or pick a node above",
                    )
                with Horizontal(classes="setting-row"):
                    yield Label("Code", classes="pair-label")
                    yield Input(
                        id="pair-code-input",
                        compact=True,
                        placeholder="as shown there, e.g. 42-maple-rocket",
                    )
                    yield Button("Join", id="pair-join", compact=True)
                yield Static("", id="pairing-status")  # this node's join: where it was typed
            yield Static(HELP, id="pairing-help", classes="dim")

    def on_mount(self) -> None:
        name = self.node.settings.display_name()
        self.query_one("#host-card").border_title = f"Show a code on this node ({name})"
        self.query_one("#join-card").border_title = "Join a node that shows a code"

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "New pairing code", "Show a code for another machine to type", self.action_new_code
        )
        yield SystemCommand(
            "Cancel pairing code", "Drop the code this node shows", self.action_cancel_code
        )

    def copy_offer(self) -> tuple[str, str] | None:
        cluster = self.node.cluster
        code = cluster.pairing_status().code if cluster is not None else None
        return ("the pairing code", code) if code else None

    # ---- drawing -----------------------------------------------------------------------
    def redraw(self, topics: set[Topic]) -> None:
        if not self.is_mounted:
            return  # the app shows a mode's screen (and ticks it) before it is composed
        cluster = self.node.cluster
        for card in ("#host-card", "#join-card", "#hint"):
            self.query_one(card).display = cluster is not None
        if cluster is None:
            self.query_one("#pairing-state", Static).update(
                "No peers to pair with: this node is not running a cluster "
                f"(mode is [b]{escape(self.node.settings.mode)}[/])."
            )
            return
        self.query_one("#pairing-state", Static).update(
            f"This node: [b]{escape(cluster.name)}[/]  [dim]id {escape(cluster.node_id)}[/]"
        )
        self._draw_code()
        if "peers" in topics:
            self._draw_discovered()
            self._forget_unpaired_join()

    def _forget_unpaired_join(self) -> None:
        """After an unpair, the join line no longer says "Paired with …"."""
        if self._joined is not None and self._joined not in self._paired_ids():
            self._joined = None
            self.show_status("")

    def _paired_ids(self) -> set[str]:
        return {p.id for p in self.node.cluster_view().peers if p.paired}

    def tick(self) -> None:
        if self.is_mounted and self.node.cluster is not None:
            self._draw_code()  # the countdown and the rate-limit wait

    def _draw_code(self) -> None:
        assert self.node.cluster is not None
        status = self.node.cluster.pairing_status()
        self.query_one("#pair-code", Static).update(self._describe(status))
        limit = ""
        if status.retry_after > 0:
            limit = (
                f"{status.failures} failed attempts: the machine that failed waits "
                f"{math.ceil(status.retry_after)} s more before its next try."
            )
        elif status.failures:
            limit = (
                f"{status.failures} failed attempt(s); a machine that keeps failing waits longer."
            )
        line = self.query_one("#pair-limit", Static)
        line.update(limit)
        line.display = bool(limit)

    def _describe(self, status: PairingStatus) -> str:
        """The host card: this node's code and what became of it. A join typed here is
        reported in the join card (`#pairing-status`), never here."""
        state, peer = status.state.value, escape(self._peer_label(status.peer))
        if status.role is not None and status.role.value == "joiner":
            state = "idle"
        if state == "paired" and not self._still_paired(status.peer):
            state = "idle"  # unpaired since: the pairing is history
        if state == "waiting" and status.code:
            expires = self.figures.duration(status.expires_in or 0)
            return (
                f"Code  [b reverse] {escape(status.code)} [/]   expires in {expires}, one attempt\n"
                "[dim]On the other machine: Pairing (6), pick this node, type the code.[/]"
            )
        if state in ("exchanging", "hello_sent", "confirm_sent"):
            return f"Checking the code with {peer}…"
        if state == "paired":
            return f"[green]Paired with {peer}.[/] It is on the Peers screen (5)."
        if state == "failed":
            reason = escape(status.detail or "unknown reason")
            return f"[red]Pairing with {peer} failed:[/] {reason}.\nPress c for a new code."
        if state == "expired":
            return "The code expired unused. Press c for a new one."
        if state == "cancelled":
            return "Code cancelled. Press c for a new one."
        return "No code shown. Press c to show one; the other machine types it."

    def _still_paired(self, peer: str | None) -> bool:
        """The host side knows the peer by name only."""
        return any(p.paired and p.name == peer for p in self.node.cluster_view().peers)

    def _peer_label(self, peer: str | None) -> str:
        """The joiner side knows the peer by the address typed; show its name when known."""
        if not peer:
            return "the other machine"
        assert self.node.cluster is not None
        names = {p.address: p.name for p in self.node.cluster_view().peers}
        return f"{names[peer]} ({peer})" if peer in names else peer

    def _draw_discovered(self) -> None:
        assert self.node.cluster is not None
        peers = [p for p in self.node.cluster_view().peers if not p.paired]
        options = self.query_one("#pair-peers", OptionList)
        highlighted = options.highlighted_option.id if options.highlighted_option else None
        options.clear_options()
        self._addresses = {p.id: p.address for p in peers}
        options.add_options(
            Option(f"{escape(p.name)}  [dim]{escape(p.address)}[/]", id=p.id) for p in peers
        )
        options.display = bool(peers)
        if highlighted in self._addresses:
            options.highlighted = options.get_option_index(highlighted)
        elif peers:
            options.highlighted = 0  # enter picks the first at once
        label = (
            "Discovered nodes (enter picks one):"
            if peers
            else "No unpaired node discovered yet: type its address."
        )
        self.query_one("#pair-discovered-label", Static).update(label)

    def show_status(
        self, text: str, *, error: bool = False, where: str = "#pairing-status"
    ) -> None:
        status = self.query_one(where, Static)
        status.set_class(error, "error")
        status.update(escape(text))

    # ---- actions -----------------------------------------------------------------------
    def prefill(self, address: str) -> None:
        """Join `address` next: the Peers screen sends a discovered node here."""
        self.query_one("#pair-address", Input).value = address
        self.query_one("#pair-code-input", Input).focus()
        self.show_status(f"Type the code that {address} shows, then press enter.")

    def action_new_code(self) -> None:
        if self.node.cluster is None:
            return
        try:
            self.node.cluster.create_pairing_code()
        except PairingError as exc:
            self.show_status(str(exc), error=True, where="#host-status")
        else:
            self.show_status("", where="#host-status")
        self._draw_code()

    def action_cancel_code(self) -> None:
        if self.node.cluster is not None:
            self.node.cluster.cancel_pairing()
            self._draw_code()

    def action_leave_field(self) -> None:
        self.set_focus(None)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        address = self._addresses.get(event.option.id or "")
        if address is not None:
            self.prefill(address)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "pair-address":
            self.query_one("#pair-code-input", Input).focus()
        else:
            self.action_join()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {
            "pair-new": self.action_new_code,
            "pair-cancel": self.action_cancel_code,
            "pair-join": self.action_join,
        }
        actions[event.button.id or ""]()

    def action_join(self) -> None:
        if self.node.cluster is None:
            return
        address = self.query_one("#pair-address", Input).value.strip()
        code = self.query_one("#pair-code-input", Input).value.strip()
        if not address:
            self.show_status("Pick a discovered node or type its address (host:port).", error=True)
            return
        if not code:
            self.show_status("Type the code the other node shows.", error=True)
            return
        self.show_status(f"Joining {address}…")
        self.run_worker(
            self._join(address, code), group="pairing", exclusive=True, exit_on_error=False
        )

    async def _join(self, address: str, code: str) -> None:
        assert self.node.cluster is not None
        try:
            peer = await self.node.cluster.join(address, code)
        except PairingError as exc:
            self.show_status(str(exc), error=True)
        except Exception as exc:  # one line on the screen; the log keeps the traceback
            log.warning("pairing with %s failed", address, exc_info=True)
            self.show_status(
                f"Pairing with {address} failed: {type(exc).__name__}: {exc}", error=True
            )
        else:
            self.query_one("#pair-code-input", Input).value = ""
            self._joined = peer.node_id
            self.show_status(
                f"Paired with {peer.name} ({peer.node_id}). It is on the Peers screen (5)."
            )
        self.redraw({"pairing", "peers"})
