"""The sharded-model keys of the Models screen: `s` shows the plan for splitting the selected
model over paired nodes, then asks before loading it; `u` on a sharded row ends it on every
node. The base of `ModelsScreen`, which draws the table and the status line these use."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from salut_tui.engine.types import ModelError
from salut_tui.shard.placement import ShardPlan
from salut_tui.ui.errors import describe_error
from salut_tui.ui.model_rows import describe_plan
from salut_tui.ui.screens.base import NodeScreen
from salut_tui.ui.widgets.confirm import Confirm
from salut_tui.views import ModelInfo

log = logging.getLogger("salut_tui.ui.screens.models")


class ShardedModelActions(NodeScreen):
    if TYPE_CHECKING:  # the Models screen's table and status line (`ModelsScreen` defines them)

        def show_status(self, text: str, *, error: bool = False) -> None: ...

        def select(self, model_id: str) -> None: ...

        def _selected_info(self) -> ModelInfo | None: ...

    async def _unload_sharded(self, model_id: str, names: list[str]) -> None:
        try:
            await self.node.unload_sharded(model_id)
        except Exception as exc:
            log.warning("unload of sharded %s failed", model_id, exc_info=True)
            self.show_status(f"Could not unload {model_id}: {describe_error(exc)}", error=True)
        else:
            self.show_status(f"Unloaded {model_id} on every node ({', '.join(names)}).")
        self.select(model_id)
        self.redraw({"models"})

    def action_load_sharded(self) -> None:
        info = self._selected_info()
        if info is None:
            return
        try:
            plan, nodes = self._shard_plan(info.id)
        except ModelError as exc:
            self.show_status(f"Cannot shard {info.id}: {exc.message}", error=True)
            return
        if plan is None:
            self.show_status(f"No paired peer to split {info.id} over: l loads it here.")
            return

        copy = bool(plan.copies)  # a node lacks the files: the choice is to copy them first
        lacking = ", ".join(c.name for c in plan.copies)

        def answered(yes: bool | None) -> None:
            if yes:
                names = ", ".join(s.name for s in plan.stages)
                first = f"Copying files to {lacking}, then loading" if copy else "Loading"
                self.show_status(f"{first} {info.id} sharded over {names}…")
                self.run_worker(
                    self._load_sharded(info.id, nodes, copy), group="models", exit_on_error=False
                )

        question = f"Load {info.id} sharded?"
        detail = describe_plan(plan, self.figures.bytes)
        yes = f"Copy to {lacking}, then load" if copy else "Load"
        self.app.push_screen(Confirm(question, detail, yes=yes, no="Cancel"), answered)

    def _shard_plan(self, model_id: str) -> tuple[ShardPlan | None, list[str] | None]:
        """The node's own plan (fewest nodes first); when that is this node alone, the split
        over this node and every healthy paired peer, since `s` asks for a split. Returns the
        `nodes` the load must be asked with to get this same plan (plan None: no peer).
        """
        plan = self.node.shard_plan(model_id)
        if plan.world_size > 1:
            return plan, None
        peers = [p.name for p in self.node.cluster_view().peers if p.paired and p.health == "ok"]
        if not peers:
            return None, None
        nodes = [self.node.settings.display_name(), *peers]
        return self.node.shard_plan(model_id, nodes), nodes

    async def _load_sharded(
        self, model_id: str, nodes: list[str] | None, copy: bool = False
    ) -> None:
        try:
            plan = await self.node.load_sharded(model_id, nodes, copy=copy)
        except Exception as exc:
            log.warning("sharded load of %s failed", model_id, exc_info=True)
            self.show_status(f"Could not shard {model_id}: {describe_error(exc)}", error=True)
        else:
            names = ", ".join(s.name for s in plan.stages)
            self.show_status(f"Loaded {model_id} sharded over {names}.")
        self.select(model_id)
        self.redraw({"models"})
