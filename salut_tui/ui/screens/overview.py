"""Overview: this node, what it is loading and serving now, its history (tokens/s, in flight,
memory over the last minutes, for it and each paired peer), its loaded models and its peers.

On a first start the default model is converted from the bundled GGUF before it loads; the load
card says so and follows the conversion instead of sitting at "0% starting".
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import ProgressBar, Static

from salut_tui.config import DEFAULT_MODEL
from salut_tui.events import CONVERTING
from salut_tui.ui.format import one_line
from salut_tui.ui.history import SELF, NodeSeries
from salut_tui.ui.messages import Topic
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.peers import health_markup
from salut_tui.ui.state import LoadState
from salut_tui.ui.widgets.history import NodeHistory

PEER_LINES = 4  # the rest are on the Peers screen


class OverviewScreen(NodeScreen):
    SCREEN_TITLE = "Overview"
    TOPICS = frozenset({"streams", "models", "peers"})

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="overview"):
            with Horizontal(id="overview-top"):
                yield Static(id="node-card", classes="card")
                yield Static(id="activity-card", classes="card")
            with Vertical(classes="card", id="loads-card"):
                yield Static(id="load-text")
                yield ProgressBar(total=100, show_eta=False, id="load-bar")
            with Vertical(classes="card", id="history-card"):
                yield NodeHistory(SELF, "this node")  # peers' rows come as they pair
            with Vertical(classes="card", id="models-card"):
                yield Static("Loaded models", classes="card-title")
                yield Static(id="loaded-models")
            with Vertical(classes="card", id="peers-card"):
                yield Static("Peers", classes="card-title")
                yield Static(id="peers-summary")

    def on_mount(self) -> None:
        self.query_one("#node-card").border_title = "This node"
        self.query_one("#activity-card").border_title = "Now"
        self.query_one("#history-card").border_title = "History · last 5 min"
        self.query_one("#loads-card").display = False

    def redraw(self, topics: set[Topic]) -> None:
        self._draw_node()
        if topics & {"streams", "models"}:
            self._draw_activity()
        if "models" in topics:
            self._draw_models()
            self._draw_loads()
        if "streams" in topics:
            self._draw_history()
        if "peers" in topics:
            self._draw_peers()

    def tick(self) -> None:
        self._draw_node()
        self._draw_activity()
        self._draw_loads()
        self._draw_history()
        self._draw_peers()  # peer health ages without an event

    def _draw_node(self) -> None:
        node, fig = self.node, self.figures
        settings = node.settings
        stats = node.stats()
        used = stats.memory_total - stats.memory_available
        key = "set" if settings.api_key else "not set (open to the LAN)"
        lines = [
            f"[b]Name[/]     {settings.display_name()}",
            f"[b]Address[/]  {settings.host}:{fig.volatile(str(node.port))}",
            f"[b]API key[/]  {key}",
            f"[b]Mode[/]     {settings.mode}",
            f"[b]BLAS[/]     {fig.volatile(node.blas.split(' (')[0])}",
            f"[b]Uptime[/]   {fig.duration(stats.uptime)}",
            f"[b]Memory[/]   {fig.bytes(used, volatile=True)} used, "
            f"{fig.bytes(stats.memory_available, volatile=True)} free",
        ]
        self.query_one("#node-card", Static).update("\n".join(lines))

    def _draw_activity(self) -> None:
        stats = self.node.stats()
        history = self.state.streams.records
        lines = [
            f"[b]In flight[/]  {stats.in_flight}",
            f"[b]Queued[/]     {stats.queued}",
            f"[b]Tokens/s[/]   {self.figures.rate(stats.tokens_per_second)}",
            f"[b]Streams[/]    {len(history)} seen (3 to view)",
        ]
        self.query_one("#activity-card", Static).update("\n".join(lines))

    def _draw_loads(self) -> None:
        """Every load in progress; the first one's bar. A first start's conversion says so."""
        active = self.state.models.active()
        card = self.query_one("#loads-card")
        card.display = bool(active)
        if not active:
            return
        model_id, first = active[0]
        card.border_title = (
            "First start: preparing the default model" if self._converting(model_id, first)
            else "Loading"
        )  # fmt: skip
        self.query_one("#load-text", Static).update(
            "\n".join(self._load_line(m, load) for m, load in active)
        )
        self.query_one("#load-bar", ProgressBar).update(progress=first.fraction * 100)

    def _converting(self, model_id: str, load: LoadState) -> bool:
        # Before the first report the default model may be about to convert: say "preparing".
        return load.stage.startswith(CONVERTING) or (
            load.stage == "starting" and model_id == DEFAULT_MODEL
        )

    def _load_line(self, model_id: str, load: LoadState) -> str:
        name = escape(one_line(model_id, 40))
        if self._converting(model_id, load):
            step = escape(one_line(load.stage.removeprefix(CONVERTING), 40))
            return (
                f"Converting [b]{name}[/] from the bundled GGUF (once, on the first start): "
                f"{load.fraction * 100:.0f}%  [dim]{step or 'starting'}[/]"
            )
        if load.stage == "starting":
            return f"Loading [b]{name}[/]: finding its files…"
        return f"Loading [b]{name}[/]: {load.fraction * 100:.0f}%  [dim]{escape(load.stage)}[/]"

    def _draw_history(self) -> None:
        card = self.query_one("#history-card")
        history = self.state.history.nodes
        peers = [k for k in history if k != SELF][:PEER_LINES]
        shown = {w.key: w for w in card.query(NodeHistory)}
        for key, old in shown.items():
            if key != SELF and key not in peers:
                old.remove()
        # This node's rows are always there (before the first sample too); peers' come and go.
        own = history.get(SELF) or NodeSeries(self.node.settings.display_name())
        shown[SELF].show(own, "this node", self.figures)
        for key in peers:
            series = history[key]
            title = f"peer {series.name}"
            widget = shown.get(key)
            if widget is None:
                card.mount(NodeHistory(key, title))  # composed by the next tick, which draws it
            else:
                widget.show(series, title, self.figures)

    def _draw_models(self) -> None:
        # The engine's own list: `local_models()` would also scan the model directories.
        engine = self.node.engine
        loaded = engine.loaded() if engine is not None else []
        if not loaded:
            text = "[dim]No model loaded. Press 2 for Models to load one.[/]"
        else:
            text = "\n".join(
                f"● {m.model_id}  [dim]{self.figures.bytes(m.memory_bytes)}[/]" for m in loaded
            )
        self.query_one("#loaded-models", Static).update(text)

    def _draw_peers(self) -> None:
        if self.node.cluster is None:
            text = f"[dim]No peers: this node runs on its own (mode is {escape(self.node.settings.mode)}).[/]"
            self.query_one("#peers-summary", Static).update(text)
            return
        peers = self.node.cluster_view().peers
        paired = [p for p in peers if p.paired]
        if not peers:
            text = "[dim]No peers yet. Press 5 for Peers, 6 to pair a machine.[/]"
        else:
            lines = [
                f"{len(paired)} paired ({sum(p.health == 'ok' for p in paired)} ok), "
                f"{len(peers) - len(paired)} discovered  [dim]5 for details[/]"
            ]
            for p in peers[:PEER_LINES]:
                mark = "[green]●[/]" if p.paired else "[dim]○[/]"
                models = len(p.loaded_models)
                load = (
                    f"  {models} model(s), {p.requests_in_flight} in flight"
                    if p.health == "ok"
                    else ""
                )
                lines.append(
                    f"{mark} {escape(one_line(p.name, 20))}  [dim]{escape(p.address)}[/]  "
                    f"{health_markup(p.health)}{load}"
                )
            if len(peers) > PEER_LINES:
                lines.append(f"[dim]… and {len(peers) - PEER_LINES} more[/]")
            text = "\n".join(lines)
        self.query_one("#peers-summary", Static).update(text)
