"""Tool calling on the chat API: request fields (`tools`, `tool_choice`, `parallel_tool_calls`)
validated into the engine's `ToolSpec`, and `ToolCall` chunks encoded the way OpenAI sends them
(`message.tool_calls`; streamed as `delta.tool_calls` fragments: the call's id, type and name
first, then its arguments, which openai-python and openai-js concatenate by `index`). Pure.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from salut_tui.engine.types import ToolCall, ToolChoiceMode, ToolSpec

FUNCTION_NAME = r"^[a-zA-Z0-9_.-]{1,64}$"  # OpenAI's rule for function names


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")  # strict, ...

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    """`{"type": "function", "function": {"name": ...}}`."""

    type: Literal["function"]
    function: NamedFunction


ToolChoiceField = Literal["auto", "none", "required"] | NamedToolChoice


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str


class AssistantToolCall(BaseModel):
    """A tool call in an assistant message of the history, as the client sends it back."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


def tool_spec(
    tools: list[ToolDef] | None,
    choice: ToolChoiceField | None,
    parallel: bool | None,
    *,
    param: str = "tool_choice",
) -> ToolSpec | None:
    """The engine's ToolSpec, or None without tools. Raises ValueError naming what is wrong."""
    if not tools:
        if choice is not None and choice != "none" and choice != "auto":
            raise ToolChoiceInvalid(f"'{param}' asks for a tool call but no 'tools' are given")
        return None
    mode: ToolChoiceMode = "auto"
    name = None
    if isinstance(choice, NamedToolChoice):
        mode, name = "function", choice.function.name
        if name not in {t.function.name for t in tools}:
            raise ToolChoiceInvalid(f"'{param}' names the function '{name}', which is not a tool")
    elif choice is not None:
        mode = choice
    dumped = tuple(t.model_dump(exclude_none=True) for t in tools)
    return ToolSpec(dumped, mode, name, True if parallel is None else parallel)


class ToolChoiceInvalid(ValueError):
    """A tool_choice that cannot be served with the given tools (a 400 on `tool_choice`)."""


# ---- encoding --------------------------------------------------------------------------
def message_tool_call(call: ToolCall) -> dict:
    """One entry of `message.tool_calls`."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def delta_tool_calls(call: ToolCall) -> list[dict]:
    """The `delta.tool_calls` fragments of one call, in order: its head (index, id, type,
    name, empty arguments), then its arguments."""
    head = {
        "index": call.index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }
    return [head, {"index": call.index, "function": {"arguments": call.arguments}}]
