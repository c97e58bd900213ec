"""Turning a request into prompt token ids with the model's own tokenizer.

Chat requests go through the tokenizer's chat template (with the generation prompt appended);
text completions (/v1/completions) are encoded as given. OpenAI clients may send message content
as a list of parts; the text parts are joined, since these models read text only.

Tokenizing is slow for a long text (about a second per 1.5 MB) and a prompt that cannot fit the
context is refused on its length first (`prompt_length_limit`), before any tokenizer sees it; a
long one is counted in pieces (`pieces`) before it is tokenized whole (see `engine/tokenize.py`).
"""

from __future__ import annotations

from typing import Any

from salut_tui.engine.tools import active_tools, prefill, template_messages, template_tools
from salut_tui.engine.types import GenerationRequest, ModelError


def message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        )
    return str(content)


def plain_messages(messages: tuple[dict, ...]) -> list[dict]:
    """Messages with string content (other keys, like tool calls, kept for the template)."""
    return [{**m, "content": message_text(m.get("content"))} for m in messages]


# No tokenizer Salut serves has tokens this long on average over a whole prompt (real text
# averages 3-5 characters per token): a prompt longer than context x this cannot fit, and
# tokenizing it to find out would cost seconds and memory.
MAX_CHARS_PER_TOKEN = 32


def prompt_texts(request: GenerationRequest) -> list[str]:
    """The texts the prompt is made of (the chat template only adds to them)."""
    if request.messages is not None:
        return [message_text(m.get("content")) for m in request.messages]
    return [request.prompt or ""]


def prompt_length(request: GenerationRequest) -> int:
    """Characters of text the prompt is made of."""
    return sum(len(text) for text in prompt_texts(request))


def pieces(text: str, size: int) -> list[str]:
    """`text` cut into pieces of at most `size` characters, each cut just before a whitespace
    character when there is one in the piece's last quarter (tokenizers split words there, so
    the pieces' token counts add up to the whole's, give or take a token per cut)."""
    out, start = [], 0
    while len(text) - start > size:
        end = start + size
        floor = end - size // 4
        cut = end
        while cut > floor and not text[cut].isspace():
            cut -= 1
        cut = cut if cut > floor else end
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


def prompt_length_limit(context_length: int) -> int:
    """The longest prompt, in characters, that could possibly fit a context of this many tokens
    (a token covers at least one character)."""
    return context_length * MAX_CHARS_PER_TOKEN


def prompt_param(request: GenerationRequest) -> str:
    """The request field an error about the prompt names."""
    return "messages" if request.messages is not None else "prompt"


def encode_request(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Prompt token ids; raises ModelError 400 when the template rejects the messages."""
    if request.messages is not None:
        messages = plain_messages(request.messages)
        tools = active_tools(tokenizer, request.model, request.tools)  # 400 if it cannot
        if not getattr(tokenizer, "has_chat_template", False):
            # A base model without a template: a plain transcript ending where the answer goes.
            text = "".join(f"{m.get('role', 'user')}: {m['content']}\n" for m in messages)
            return list(tokenizer.encode(text + "assistant:"))
        extra = {"tools": template_tools(tools)} if tools is not None else {}
        try:
            ids = list(
                tokenizer.apply_chat_template(
                    template_messages(messages), add_generation_prompt=True, **extra
                )
            )
        except Exception as exc:  # jinja raises for roles or orders a template does not accept
            raise ModelError(
                f"the model's chat template rejected the messages: {exc}",
                status=400,
                code="invalid_messages",
                param="messages",
            ) from exc
        forced = prefill(tokenizer, tools)  # tool_choice required / named: the call's opening
        if forced:
            ids += tokenizer.encode(forced, add_special_tokens=False)
        return ids
    return list(tokenizer.encode(request.prompt or ""))
