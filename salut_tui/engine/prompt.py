"""Turning a request into prompt token ids with the model's own tokenizer.

Chat requests go through the tokenizer's chat template (with the generation prompt appended);
text completions (/v1/completions) are encoded as given. OpenAI clients may send message content
as a list of parts; the text parts are joined, since these models read text only.
"""

from __future__ import annotations

from typing import Any

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


def encode_request(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Prompt token ids; raises ModelError 400 when the template rejects the messages."""
    if request.messages is not None:
        messages = plain_messages(request.messages)
        if not getattr(tokenizer, "has_chat_template", False):
            # A base model without a template: a plain transcript ending where the answer goes.
            text = "".join(f"{m.get('role', 'user')}: {m['content']}\n" for m in messages)
            return list(tokenizer.encode(text + "assistant:"))
        try:
            return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        except Exception as exc:  # jinja raises for roles or orders a template does not accept
            raise ModelError(
                f"the model's chat template rejected the messages: {exc}",
                status=400,
                code="invalid_messages",
                param="messages",
            ) from exc
    return list(tokenizer.encode(request.prompt or ""))
