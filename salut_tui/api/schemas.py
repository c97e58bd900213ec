"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic.

Validation is strict on types (a string where a number belongs is a 400, not a silent cast) and
lenient on presence: fields that clients send but Salut does not use (presence_penalty, user,
logit_bias, ...) are accepted and ignored; fields that would change the answer and cannot be
honoured (`suffix`, `echo` with `logprobs`) are a 400, never silence. A body that fails becomes `RequestInvalid`,
which names the offending field as the OpenAI `param`.

`model` is required, as in OpenAI's API: a request without one is a 400 naming `model`, never
served by whatever model this node would pick (that could mean loading gigabytes for a typo).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from salut_tui.api.tools import (
    AssistantToolCall,
    ToolChoiceField,
    ToolChoiceInvalid,
    ToolDef,
    tool_spec,
)
from salut_tui.engine import errors
from salut_tui.engine.constraint import JsonConstraint
from salut_tui.engine.sampling_contract import (
    MAX_STOP_SEQUENCES,
    MAX_TOKENS,
    REPETITION_PENALTY,
    SEED,
    TEMPERATURE,
    TOP_P,
    NumberField,
)
from salut_tui.engine.stops import normalize_stops
from salut_tui.engine.types import GenerationRequest, SamplingParams, ToolSpec
from salut_tui.keepalive import parse_keep_alive

MAX_TOP_LOGPROBS = 20  # OpenAI's bound for top_logprobs

MAX_MODEL_ID_LENGTH = 512  # longer than any hub id or local path a node serves

BodyT = TypeVar("BodyT", bound=BaseModel)


class RequestInvalid(Exception):
    """A request body that cannot be served; `param` names the field (None: the whole body)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class TextPart(BaseModel):
    """One part of a list-form message content. Only text parts carry meaning for Salut."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, tool_call_id, ...

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    tool_calls: list[AssistantToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool result: which call it answers
    name: str | None = None

    def text(self) -> str:
        """The content as one string; list content is its text parts joined in order."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def as_template_message(self) -> dict:
        # Chat templates know system/user/assistant/tool; "developer" is OpenAI's newer name
        # for the system role and "function" the older name for tool results.
        role = {"developer": "system", "function": "tool"}.get(self.role, self.role)
        message: dict = {"role": role, "content": self.text()}
        if self.tool_calls:
            message["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None and role == "tool":
            message["name"] = self.name
        return message


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema`, as OpenAI defines it (and `client.beta...parse` sends)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(default="", max_length=64)
    description: str | None = None
    # `schema` would shadow BaseModel.schema: the attribute is `schema_`, the JSON name `schema`.
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None  # always honoured: the output is constrained either way


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def constraint(self) -> JsonConstraint | None:
        """The engine's constraint; RequestInvalid (400) for a schema that cannot compile."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return JsonConstraint()
        if self.json_schema is None:
            raise RequestInvalid(
                "Missing required parameter: 'response_format.json_schema'.",
                "response_format.json_schema",
            )
        constraint = JsonConstraint.for_schema(self.json_schema.schema_, self.json_schema.name)
        # Imported here: llguidance is needed only when a schema is sent.
        from salut_tui.engine.structured import SchemaInvalid, grammar_for

        try:
            grammar_for(constraint)
        except SchemaInvalid as exc:
            error = errors.schema_invalid(str(exc))
            raise RequestInvalid(error.message, error.param) from None
        return constraint


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


def _bounded(field: NumberField) -> Any:
    """An optional body field with the contract's bounds (None: the contract's default)."""
    return Field(
        None,
        ge=field.ge,
        gt=field.gt,
        le=field.le,
        allow_inf_nan=False if field.kind == "float" else None,
        description=field.doc,
    )


def _or_default(value: float | None, default: float) -> float:
    return default if value is None else value


class _SamplingBody(BaseModel):
    """Fields shared by /v1/chat/completions and /v1/completions. None means "use the default".

    Sampling bounds and defaults come from the one sampling contract (engine/sampling_contract.py).
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=MAX_MODEL_ID_LENGTH)
    temperature: float | None = _bounded(TEMPERATURE)
    top_p: float | None = _bounded(TOP_P)
    repetition_penalty: float | None = _bounded(REPETITION_PENALTY)
    max_tokens: int | None = _bounded(MAX_TOKENS)
    max_completion_tokens: int | None = _bounded(MAX_TOKENS)
    stream: bool | None = False
    stop: str | list[str] | None = None
    seed: int | None = _bounded(SEED)
    stream_options: StreamOptions | None = None
    n: int | None = None
    keep_alive: str | int | float | None = None
    response_format: ResponseFormat | None = None

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None:
            parse_keep_alive(value)
        return value

    def keep_alive_seconds(self) -> float | None:
        """The request's keep-alive in seconds (-1.0: keep loaded), None when not given."""
        if self.keep_alive is None:
            return None
        seconds = parse_keep_alive(self.keep_alive)
        return -1.0 if seconds is None else seconds

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return value

    @field_validator("model")
    @classmethod
    def _model_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a model id is required (see GET /v1/models)")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def constraint(self) -> JsonConstraint | None:
        return self.response_format.constraint() if self.response_format else None

    def sampling(self) -> SamplingParams:
        # max_completion_tokens is the newer name; when both are given it wins.
        max_tokens = self.max_completion_tokens or self.max_tokens
        return SamplingParams(
            temperature=_or_default(self.temperature, TEMPERATURE.default),
            top_p=_or_default(self.top_p, TOP_P.default),
            repetition_penalty=_or_default(self.repetition_penalty, REPETITION_PENALTY.default),
            max_tokens=max_tokens,
            stop=normalize_stops(self.stop),
            seed=self.seed,
        )


class ChatCompletionBody(_SamplingBody):
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoiceField | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def logprobs_wanted(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise RequestInvalid(
                "Invalid value for 'top_logprobs': it needs 'logprobs' set to true.",
                "top_logprobs",
            )
        return (self.top_logprobs or 0) if self.logprobs else None

    def tool_spec(self) -> ToolSpec | None:
        try:
            return tool_spec(self.tools, self.tool_choice, self.parallel_tool_calls)
        except ToolChoiceInvalid as exc:
            raise RequestInvalid(
                f"Invalid value for 'tool_choice': {exc}.", "tool_choice"
            ) from None

    def to_request(self, client: str) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            messages=tuple(m.as_template_message() for m in self.messages),
            sampling=self.sampling(),
            client=client,
            keep_alive=self.keep_alive_seconds(),
            constraint=self.constraint(),
            tools=self.tool_spec(),
            logprobs=self.logprobs_wanted(),
        )


class CompletionBody(_SamplingBody):
    prompt: str | list[str]
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool | None = None
    suffix: str | None = None

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:  # fill-in-the-middle needs model-specific tokens Salut does not know
            raise ValueError("suffix (fill-in-the-middle) is not supported by Salut")
        return value

    @property
    def echoing(self) -> bool:
        if self.echo and self.logprobs is not None:
            raise RequestInvalid(
                "Invalid value for 'echo': echo with logprobs (the prompt's log-probabilities) "
                "is not supported by Salut; send one or the other.",
                "echo",
            )
        return bool(self.echo)

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("prompt must be a string or a list of exactly one string")
        return value

    def to_request(self, client: str) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            prompt=self.prompt_text,
            sampling=self.sampling(),
            client=client,
            keep_alive=self.keep_alive_seconds(),
            constraint=self.constraint(),
            logprobs=self.logprobs,
        )


def parse_body(model: type[BodyT], raw: bytes) -> BodyT:
    """Validate a raw JSON body (strict types) or raise RequestInvalid naming the field."""
    if not raw.strip():
        raise RequestInvalid("The request body is empty; expected a JSON object.")
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _as_request_invalid(exc) from None


def _as_request_invalid(exc: ValidationError) -> RequestInvalid:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return RequestInvalid(f"The request body is not valid JSON: {error['msg']}")
    if error["type"] == "model_type":
        return RequestInvalid("The request body must be a JSON object.")
    param = _param_name(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {message}."
    return RequestInvalid(message, param)


def _param_name(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'role') -> 'messages[0].role'.

    pydantic adds the member type of a union to the location (`str`, `list[TextPart]`); those
    tags are not field names and are dropped.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_union_tag(part):
            out += f".{part}" if out else part
    return out


def _is_union_tag(part: str) -> bool:
    # Tags name a type: `str`, `list[TextPart]`, or a model class (capitalised).
    return "[" in part or part in _TYPE_TAGS or part[:1].isupper()


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})
