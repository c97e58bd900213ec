"""`SalutApp`: the node's terminal UI, running on the same asyncio loop as the node.

The app starts the node in `on_mount` (API server + engine thread, on this loop) and stops it on
the way out, so quitting ends in-flight streams with a proper finish and unloads the models.
Screens are Textual modes: each is created once and keeps its state while others are shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from textual.actions import SkipAction
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import HelpPanel

from salut_tui.events import ModelLoaded, ModelLoadFailed, ModelUnloaded
from salut_tui.ui.bridge import EventBridge, LogRouting
from salut_tui.ui.format import Figures
from salut_tui.ui.help import HelpOverlay
from salut_tui.ui.messages import LogPosted, NodeChanged, NodeNotice
from salut_tui.ui.palette import screen_commands
from salut_tui.ui.quitting import Stopping, quit_reasons
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.screens.chat import ChatScreen
from salut_tui.ui.screens.logs import LogsScreen
from salut_tui.ui.screens.models import ModelsScreen
from salut_tui.ui.screens.notifications import NotificationHistory
from salut_tui.ui.screens.overview import OverviewScreen
from salut_tui.ui.screens.pairing import PairingScreen
from salut_tui.ui.screens.peers import PeersScreen
from salut_tui.ui.screens.settings import SettingsScreen
from salut_tui.ui.screens.streams import StreamsScreen
from salut_tui.ui.seam import UINode
from salut_tui.ui.state import LEVELS, UIState
from salut_tui.ui.themes import load_theme_files, theme_dirs
from salut_tui.ui.widgets.confirm import Confirm

log = logging.getLogger(__name__)

# (mode, key, title) in the order they appear in the footer and the command palette.
SCREENS: tuple[tuple[str, str, str], ...] = (
    ("overview", "1", "Overview"),
    ("models", "2", "Models"),
    ("streams", "3", "Streams"),
    ("chat", "4", "Chat"),
    ("peers", "5", "Peers"),
    ("pairing", "6", "Pairing"),
    ("settings", "7", "Settings"),
    ("logs", "8", "Logs"),
)


class SalutApp(App[int]):
    """The terminal UI of one node. `SalutApp(node)` with a node that is not started yet."""

    TITLE = "Salut"
    CSS_PATH = "salut.tcss"
    SCREEN_TYPES: dict[str, type[NodeScreen]] = {
        "overview": OverviewScreen,
        "models": ModelsScreen,
        "streams": StreamsScreen,
        "chat": ChatScreen,
        "peers": PeersScreen,
        "pairing": PairingScreen,
        "settings": SettingsScreen,
        "logs": LogsScreen,
    }
    MODES = dict(SCREEN_TYPES)
    BINDINGS = [
        *(Binding(key, f"show('{mode}')", title, id=mode) for mode, key, title in SCREENS),
        # F1..F8 reach the screens even while a text field has the focus.
        *(
            Binding(f"f{n}", f"show('{mode}')", title, show=False, priority=True)
            for n, (mode, _key, title) in enumerate(SCREENS, start=1)
        ),
        Binding("n", "notifications", "Notifications", show=False),
        Binding("q", "quit", "Quit"),
        # ctrl+c: Textual's own copy in fields and selections; with nothing to copy it reaches
        # App's ctrl+c binding, `help_quit` below. ctrl+q (App's) quits the same way as q.
        Binding("y", "copy_offer", "Copy", show=False, tooltip="Copy what this screen offers"),
        Binding("question_mark", "help", "Help", show=False, tooltip="Every key of this screen"),
        Binding("escape", "hide_keys", "Close the Keys panel", show=False, priority=True),
    ]

    def __init__(
        self,
        node: UINode,
        *,
        preload: list[str] | None = None,
        mask_volatile: bool = False,
        start_node: bool = True,
    ) -> None:
        super().__init__()
        self.node = node
        self.state = UIState()
        self.figures = Figures(mask_volatile)
        self._preload = preload
        self._start_node = start_node
        self._bridge = EventBridge(self, self.state)
        self._unsubscribe: Callable[[], None] | None = None
        self._logs = LogRouting(self.post_message)
        self.theme_names: list[str] = []
        self.stopping = False

    # ---- lifecycle ---------------------------------------------------------------------
    async def on_mount(self) -> None:
        self._install_themes()
        self._install_log_handler()
        self._unsubscribe = self.node.events.subscribe(self._bridge.on_event)
        await self.switch_mode("overview")
        self._sample()  # the peers as they are now: what changes from here on is news
        self.set_interval(1.0, self._tick)
        if not self._start_node:
            return
        try:
            await self.node.start(preload=self._preload)
        except OSError as exc:
            where = f"{self.node.settings.host}:{self.node.settings.port}"
            message = f"salut: cannot listen on {where}: {exc.strerror or exc}"
            self.exit(2, return_code=2, message=message)  # the process exit status

    async def on_unmount(self) -> None:
        await self.node.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._logs.remove()

    # ---- keys: quit, copy, help ----------------------------------------------------------
    async def action_quit(self) -> None:
        """Ask first when quitting would lose something; then stop the node, then exit."""
        if self.stopping or isinstance(self.screen, Confirm):
            return
        attached = self.node.attached
        reasons = quit_reasons(self.node.stats().in_flight, self.node_screens(), attached=attached)
        if not reasons:
            self._stop_and_exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._stop_and_exit()

        detail = "; ".join(reasons).capitalize() + "."
        if attached:
            detail += " The node keeps running."
        self.push_screen(Confirm("Quit Salut?", detail, yes="Quit", no="Stay"), answered)

    def action_help_quit(self) -> None:
        """ctrl+c with nothing selected to copy: quit, as a terminal user expects."""
        self.run_worker(self.action_quit(), exit_on_error=False)

    def _stop_and_exit(self) -> None:
        """Finish in-flight streams and unload models before the screen goes away (attached:
        only detach; the node keeps serving)."""
        self.stopping = True
        self.push_screen(Stopping(self.node.stats().in_flight, attached=self.node.attached))

        async def stop() -> None:
            try:
                await self.node.stop()
            except Exception:  # the UI still goes away; run_app stops what is left
                log.exception("stopping the node failed")
            finally:
                self.exit(0)

        self.run_worker(stop(), exit_on_error=False)

    def action_copy_offer(self) -> None:
        screen = self.screen
        offer = screen.copy_offer() if isinstance(screen, NodeScreen) else None
        if offer is None:
            self.notify("Nothing to copy here.", timeout=3)
            return
        what, text = offer
        self.copy_to_clipboard(text)
        self.notify(f"Copied {what} ({len(text)} characters).", timeout=3)

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, NodeScreen):
            titles = tuple(title for _mode, _key, title in SCREENS)
            self.push_screen(HelpOverlay(screen, screen.SCREEN_TITLE, screen.HINT, titles))

    def action_hide_keys(self) -> None:
        """escape closes Textual's Keys panel (palette: Keys) when it is open."""
        panels = self.screen.query(HelpPanel)
        if not panels:
            raise SkipAction()
        panels.remove()

    def node_screens(self) -> list[NodeScreen]:
        """The screens created so far (a mode's screen is created when first shown)."""
        return [s for s in map(self.mode_screen, self.SCREEN_TYPES) if s is not None]

    def mode_screen(self, mode: str) -> NodeScreen | None:
        stack = self._screen_stacks.get(mode)
        screen = stack[0] if stack else None
        return screen if isinstance(screen, NodeScreen) else None

    def _install_themes(self) -> None:
        settings = self.node.settings
        for theme in load_theme_files(theme_dirs(settings, self.node.config_path)):
            self.register_theme(theme)
        self.theme_names = sorted(self.available_themes)
        if settings.theme in self.available_themes:
            self.theme = settings.theme
        else:
            log.warning("theme %r not found; using the built-in look", settings.theme)

    def _install_log_handler(self) -> None:
        self._logs.install(LEVELS.get(self.node.settings.log_level.upper(), logging.INFO))

    def apply_log_level(self, name: str) -> None:
        """What the Logs screen receives from now on (log_level in Settings, DEBUG in Logs):
        this process's loggers, and the node's (another process's when attached)."""
        self._logs.set_level(LEVELS.get(name.upper(), logging.INFO))
        self.node.set_log_level(name.upper() if name.upper() in LEVELS else "INFO")

    @property
    def log_level(self) -> int:
        return self._logs.level

    # ---- notifications -----------------------------------------------------------------
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast also goes into the history (n shows it)."""
        self.state.notices.add(severity, message)
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_notifications(self) -> None:
        if not isinstance(self.screen, NotificationHistory):
            notices = self.state.notices.read()
            self.push_screen(NotificationHistory(notices, mask_time=self.figures.mask_volatile))

    def _sample(self) -> None:
        """Once a second, whatever the screen: the history graphs, and toasts for peers that
        paired, unpaired, dropped or came back."""
        peers = self.node.cluster_view().peers if self.node.cluster is not None else ()
        self.state.history.sample(self.node.settings.display_name(), self.node.stats(), peers)
        if self.node.cluster is None:
            return
        for notice in self.state.peer_watch.observe(peers):
            self.notify(notice.text, severity=notice.severity, timeout=6, markup=False)

    # ---- navigation --------------------------------------------------------------------
    async def action_show(self, mode: str) -> None:
        if self.current_mode != mode:
            await self.switch_mode(mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        current = screen if isinstance(screen, NodeScreen) else None
        if current is not None:  # `?` types text in a field; the palette reaches it anywhere
            yield SystemCommand(
                "Help: keys of this screen", "Every key, as ? shows", self.action_help
            )
        yield SystemCommand(
            "Notification history", "Every notification so far (key n)", self.action_notifications
        )
        yield from screen_commands(self, current, SCREENS)
        yield from super().get_system_commands(screen)

    # ---- node events -------------------------------------------------------------------
    def on_node_changed(self, message: NodeChanged) -> None:
        self._bridge.handled(message.topic)
        screen = self._live_screen()
        # A screen being pushed is current before its widgets exist: it draws on resume instead.
        if isinstance(screen, NodeScreen) and screen.is_mounted and message.topic in screen.TOPICS:
            screen.redraw({message.topic})

    def on_node_notice(self, message: NodeNotice) -> None:
        event = message.event
        if isinstance(event, ModelLoaded):
            self.notify(f"Loaded {event.model_id}", timeout=4)
        elif isinstance(event, ModelLoadFailed):
            self.notify(
                f"Could not load {event.model_id}: {event.message}", severity="error", timeout=10
            )
        elif isinstance(event, ModelUnloaded):
            self.notify(f"Unloaded {event.model_id}", timeout=4)

    def on_log_posted(self, message: LogPosted) -> None:
        self.state.logs.append(message.entry)
        screen = self._live_screen()
        if isinstance(screen, LogsScreen) and screen.is_mounted:  # else resume replays it
            screen.append(message.entry)

    def _tick(self) -> None:
        """Once a second: the title bar figures and whatever the current screen counts."""
        screen = self._live_screen()
        if screen is None:  # the app is closing
            return
        self._sample()
        if isinstance(screen, NodeScreen) and screen.is_mounted:
            self.draw_title(screen)
            screen.tick()

    def _live_screen(self) -> Screen | None:
        """The current screen, or None once the app is closing: a timer tick, a node event
        (node.stop publishes peer and model events on the way out) or a log line arriving while
        the screens are taken apart (their widgets go first, so a redraw finds no `#hint`) or
        after they are gone (ScreenStackError) has nothing to draw on."""
        return self.screen if self.is_running and self.screen_stack else None

    def draw_title(self, screen: NodeScreen) -> None:
        stats = self.node.stats()
        rate = self.figures.rate(stats.tokens_per_second)
        screen.update_title(f"{stats.in_flight} in flight · {rate} tok/s")


async def run_app(app: SalutApp) -> int:
    """Run the app; stop the node on this loop whatever way the app ends."""
    try:
        await app.run_async()
    finally:
        await app.node.stop()
    return app.return_code or 0


async def run_ui(node: UINode, preload: list[str]) -> int:
    """The UI of `salut` (no sub-command), for `run_node`: runs the node until quit."""
    app = SalutApp(node, preload=preload)
    # Stream handlers set up for headless use would write over the screen while the app runs.
    root = logging.getLogger()
    terminal_handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    for handler in terminal_handlers:
        root.removeHandler(handler)
    try:
        return await run_app(app)
    finally:
        for handler in terminal_handlers:
            root.addHandler(handler)
