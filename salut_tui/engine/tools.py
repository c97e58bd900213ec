"""Tool calling with mlx-lm's own support: the prompt side and the output side.

Prompt: the tools go to the model's chat template (`apply_chat_template(messages, tools=...)`),
history messages keep their `tool_calls` (arguments as objects, which templates print with
`tojson`) and `tool` results. `tool_choice` "required" or a named function is enforced by
prefilling the generation prompt with the tool-call start marker (and, for formats whose call
opening is known, the function name), so the model can only continue a tool call.

Output: mlx-lm's `TextStateMachine` splits the answer's text into plain content and tool-call text
between the tokenizer's `tool_call_start`/`tool_call_end` markers; each finished call is parsed by
the tokenizer's `tool_parser` (a module of `mlx_lm.tool_parsers`, chosen by mlx-lm from the chat
template) into a `ToolCall` chunk. No parser of Salut's own.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from mlx_lm.generate import TextStateMachine

from salut_tui.engine.types import FinishReason, ModelError, ToolCall, ToolSpec

log = logging.getLogger(__name__)

# How the call opens, after the start marker, in formats where the function name comes first:
# a named `tool_choice` prefills it. Keyed by mlx-lm tool parser module.
_NAMED_OPENINGS = {
    "json_tools": '\n{{"name": {name}, "arguments": ',
    "qwen3_coder": "\n<function={bare}>\n",
}


def parser_name(tokenizer: Any) -> str | None:
    """The mlx-lm tool parser module's short name ("json_tools"), None without tool support."""
    parser = getattr(tokenizer, "tool_parser", None)
    if parser is None or not getattr(tokenizer, "has_tool_calling", False):
        return None
    return str(getattr(parser, "__module__", "")).rsplit(".", 1)[-1] or None


def active_tools(tokenizer: Any, model_id: str, spec: ToolSpec | None) -> ToolSpec | None:
    """The tools this request really uses, or a 400 naming the model when it cannot call tools.

    `tool_choice: "none"` on a model without tool support is served without the tools.
    """
    if spec is None or not spec.tools:
        return None
    if parser_name(tokenizer) is None or not getattr(tokenizer, "has_chat_template", False):
        if spec.choice == "none":
            return None
        raise ModelError(
            f"The model '{model_id}' does not support tool calling: its chat template has no "
            "tool-call format that mlx-lm knows. Send the request without 'tools' (or with "
            "tool_choice 'none'), or use a model with tool support.",
            status=400,
            code="tools_not_supported",
            param="tools",
        )
    if spec.choice == "function" and prefill(tokenizer, spec) is None:
        raise ModelError(
            f"The model '{model_id}' cannot be made to call one named function (its tool-call "
            f"format '{parser_name(tokenizer)}' has no known opening); use tool_choice "
            "'required' instead.",
            status=400,
            code="tool_choice_not_supported",
            param="tool_choice",
        )
    return spec


def prefill(tokenizer: Any, spec: ToolSpec | None) -> str | None:
    """Text appended to the generation prompt to force a tool call (None: no forcing).

    It starts with the tool-call start marker; what follows it is the beginning of the call's
    text, which the output side feeds to the parser together with what the model writes.
    """
    if spec is None or spec.choice not in ("required", "function"):
        return None
    start = tokenizer.tool_call_start
    if spec.choice == "required":
        return start
    opening = _NAMED_OPENINGS.get(parser_name(tokenizer) or "")
    if opening is None or spec.function is None:
        return None
    return start + opening.format(name=json.dumps(spec.function), bare=spec.function)


def template_messages(messages: list[dict]) -> list[dict]:
    """Messages as chat templates expect them: tool-call arguments as objects (OpenAI sends JSON
    strings; templates print them with `tojson`), as mlx-lm's server does."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = {**message, "tool_calls": [_template_call(c) for c in calls]}
        out.append(message)
    return out


def _template_call(call: dict) -> dict:
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    try:
        arguments = json.loads(function["arguments"]) if function["arguments"].strip() else {}
    except json.JSONDecodeError:
        return call  # the template prints the string as it is
    return {**call, "function": {**function, "arguments": arguments}}


def template_tools(spec: ToolSpec | None) -> list[dict] | None:
    return list(spec.tools) if spec is not None and spec.choice != "none" else None


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ToolStep:
    """What one piece of answer text produced: plain `text`, finished `calls`, and whether the
    answer must end here (a single tool call was asked for and it is complete)."""

    text: str
    calls: list[ToolCall]
    end: bool = False


class ToolCallStream:
    """Splits one answer's text into content and tool calls (see the module docstring)."""

    def __init__(self, tokenizer: Any, spec: ToolSpec, prefilled: str | None) -> None:
        start, end = tokenizer.tool_call_start, tokenizer.tool_call_end
        self._parser = tokenizer.tool_parser
        self._tools = list(spec.tools)
        # Named choice and parallel_tool_calls false: the answer is one call, then it ends.
        self._single = spec.choice == "function" or not spec.parallel
        self._machine = TextStateMachine(
            {"normal": [(start, "tool")], "tool": [(end, "normal")] if end else []}
        )
        in_call = prefilled is not None
        self._state = self._machine.make_state("tool" if in_call else "normal")
        self._tool_text = prefilled[len(start) :] if prefilled is not None else ""
        self._in_call = in_call
        self.calls = 0

    def feed(self, text: str) -> ToolStep:
        self._state, segments = TextStateMachine.split(self._state, text)
        return self._take(segments)

    def finish(self, reason: FinishReason) -> tuple[ToolStep, FinishReason]:
        """The end of the answer: held-back text, a call cut short, and the finish reason
        ("tool_calls" when the answer made calls and ended on its own)."""
        self._state, held, current = TextStateMachine.flush(self._state)
        step = self._take([(current, held)])
        if self._in_call:
            step.text += self._close_call(step.calls)
        if (step.calls or self.calls) and reason == "stop":
            reason = "tool_calls"
        return step, reason

    def _take(self, segments: list[tuple[str | None, str]]) -> ToolStep:
        step = ToolStep("", [])
        for state, text in segments:
            if state == "tool":
                self._in_call = True
                self._tool_text += text
            else:
                if self._in_call:
                    step.text += self._close_call(step.calls)
                    if self._single and self.calls:
                        step.end = True
                        return step
                step.text += text
        return step

    def _close_call(self, calls: list[ToolCall]) -> str:
        """Parse the finished call; text that is no call goes back to the content."""
        text, self._tool_text, self._in_call = self._tool_text, "", False
        if self._single and self.calls:
            return ""  # a second call where one was asked for: dropped
        try:
            parsed = self._parser(text, self._tools)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.info("tool call text did not parse (%s): %r", exc, text[:200])
            return text
        for item in parsed if isinstance(parsed, list) else [parsed]:
            arguments = item.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            calls.append(ToolCall(self.calls, new_call_id(), str(item["name"]), arguments))
            self.calls += 1
        return ""
