"""The command palette's entries: every screen's commands, wherever the user opens it.

A screen lists only the commands that would do something now (`NodeScreen.commands`). A screen
that is not shown is asked through a fresh instance that is never mounted (its `commands()` reads
the node, not its widgets); choosing one of its commands shows that screen first, then runs the
command of the real screen with the same title.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from textual.app import SystemCommand
from textual.css.query import NoMatches

from salut_tui.ui.screens.base import NodeScreen

if TYPE_CHECKING:
    from salut_tui.ui.app import SalutApp

# Screens whose every command acts on the cluster: nothing to offer in solo mode.
CLUSTER_MODES = frozenset({"peers", "pairing"})


def screen_commands(
    app: SalutApp, current: NodeScreen | None, screens: Iterable[tuple[str, str, str]]
) -> Iterable[SystemCommand]:
    for mode, key, title in screens:
        screen = app.mode_screen(mode)
        if screen is not current:
            yield SystemCommand(
                f"Show {title}", f"Open the {title} screen (key {key})", shower(app, mode)
            )
        if mode in CLUSTER_MODES and app.node.cluster is None:
            continue
        fresh = screen is None
        offered = screen if screen is not None else app.SCREEN_TYPES[mode]()
        try:
            commands = list(offered.commands())
        except NoMatches:  # a screen whose commands read its widgets, asked before it has any
            continue
        for command in commands:
            if offered is current:
                yield command
            elif not fresh and offered.is_mounted:
                yield SystemCommand(
                    command.title, f"{title}: {command.help}", there(app, mode, command.callback)
                )
            else:
                yield SystemCommand(
                    command.title, f"{title}: {command.help}", by_title(app, mode, command.title)
                )


def shower(app: SalutApp, mode: str) -> Callable[[], object]:
    async def show() -> None:
        await app.action_show(mode)

    return show


def there(app: SalutApp, mode: str, callback: Callable[[], object]) -> Callable[[], object]:
    async def run() -> None:
        await app.action_show(mode)
        result = callback()
        if inspect.isawaitable(result):
            await result

    return run


def by_title(app: SalutApp, mode: str, title: str) -> Callable[[], object]:
    async def run() -> None:
        await app.action_show(mode)
        screen = app.screen
        if not isinstance(screen, NodeScreen):
            return
        for command in screen.commands():
            if command.title == title:
                result = command.callback()
                if inspect.isawaitable(result):
                    await result
                return

    return run
