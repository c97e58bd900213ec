"""`POST /v1/responses` request bodies: validated, then turned into a chat `GenerationRequest`.

`input` is a string (one user message) or a list of items: messages (`role` + string content or
`input_text`/`output_text` parts), `function_call` items (an earlier call, sent back) and
`function_call_output` items (its result). They become chat messages for the model's template,
`instructions` first as the system message. Function tools are flat in this API
(`{"type": "function", "name", "parameters"}`) and become chat tools. Salut keeps no state:
`previous_response_id`, `conversation` and `background` are 400s, as are non-function tools,
non-text inputs and output formats other than text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from salut_tui.api.schemas import RequestInvalid, StreamOptions, _bounded, _or_default
from salut_tui.api.tools import (
    FUNCTION_NAME,
    FunctionDef,
    NamedFunction,
    NamedToolChoice,
    ToolChoiceInvalid,
    ToolDef,
    tool_spec,
)
from salut_tui.engine.sampling_contract import MAX_TOKENS, REPETITION_PENALTY, TEMPERATURE, TOP_P
from salut_tui.engine.types import GenerationRequest, SamplingParams, ToolSpec

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = {"input_text", "output_text", "text"}


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="allow")  # strict, ...

    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict | None = None


class FunctionChoice(BaseModel):
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # verbosity

    format: TextFormat | None = None


class ResponsesBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # metadata, user, store, truncation, ...

    model: str = Field(min_length=1)  # required, as on OpenAI's API
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = _bounded(MAX_TOKENS)
    temperature: float | None = _bounded(TEMPERATURE)
    top_p: float | None = _bounded(TOP_P)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    previous_response_id: str | None = None
    conversation: str | dict | None = None
    background: bool | None = None
    top_logprobs: int | None = None

    @field_validator("previous_response_id", "conversation")
    @classmethod
    def _stateless(cls, value: object) -> object:
        if value is not None:
            raise ValueError(
                "Salut's Responses API is stateless (store: false) and keeps no earlier "
                "responses; send the whole conversation in 'input' instead"
            )
        return value

    @field_validator("background")
    @classmethod
    def _foreground(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported by Salut")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise ValueError("log-probabilities on the Responses API are not supported by Salut")
        return value

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    def chat_tools(self) -> list[ToolDef] | None:
        if self.tools is None:
            return None
        return [
            ToolDef(
                type="function",
                function=FunctionDef.model_validate(t.model_dump(exclude={"type"})),
            )
            for t in self.tools
        ]

    def tool_spec(self) -> ToolSpec | None:
        choice = self.tool_choice
        named = (
            NamedToolChoice(type="function", function=NamedFunction(name=choice.name))
            if isinstance(choice, FunctionChoice)
            else choice
        )
        try:
            return tool_spec(self.chat_tools(), named, self.parallel_tool_calls)
        except ToolChoiceInvalid as exc:
            raise RequestInvalid(
                f"Invalid value for 'tool_choice': {exc}.", "tool_choice"
            ) from None

    def messages(self) -> tuple[dict, ...]:
        out: list[dict] = []
        if self.instructions:
            out.append({"role": "system", "content": self.instructions})
        if isinstance(self.input, str):
            out.append({"role": "user", "content": self.input})
        else:
            for index, item in enumerate(self.input):
                _add_item(out, item, f"input[{index}]")
        if not out:
            raise RequestInvalid("Invalid value for 'input': it holds no message.", "input")
        return tuple(out)

    def to_request(self, client: str) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            messages=self.messages(),
            sampling=SamplingParams(
                temperature=_or_default(self.temperature, TEMPERATURE.default),
                top_p=_or_default(self.top_p, TOP_P.default),
                repetition_penalty=REPETITION_PENALTY.default,
                max_tokens=self.max_output_tokens,
            ),
            client=client,
            tools=self.tool_spec(),
        )


def _add_item(out: list[dict], item: dict, param: str) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise RequestInvalid(
                f"Invalid value for '{param}.role': expected user, assistant, system or developer.",
                f"{param}.role",
            )
        out.append({"role": role, "content": _text(item.get("content"), f"{param}.content")})
    elif kind == "function_call":
        call = {
            "id": _string(item, "call_id", param),
            "type": "function",
            "function": {
                "name": _string(item, "name", param),
                "arguments": _string(item, "arguments", param),
            },
        }
        last = out[-1] if out else None
        if last is not None and last["role"] == "assistant":  # calls of one turn: one message
            last.setdefault("tool_calls", []).append(call)
        else:
            out.append({"role": "assistant", "content": "", "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        content = output if isinstance(output, str) else _text(output, f"{param}.output")
        out.append(
            {"role": "tool", "tool_call_id": _string(item, "call_id", param), "content": content}
        )
    else:
        raise RequestInvalid(
            f"Invalid value for '{param}.type': '{kind}' items are not supported by Salut "
            "(messages, function_call and function_call_output are).",
            f"{param}.type",
        )


def _string(item: dict, key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise RequestInvalid(f"Missing or invalid '{param}.{key}': expected a string.", param)
    return value


def _text(content: object, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestInvalid(f"Invalid value for '{param}': expected a string or parts.", param)
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise RequestInvalid(
                f"Invalid value for '{param}[{index}]': '{kind}' content is not supported by "
                "Salut (text only).",
                f"{param}[{index}]",
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)
