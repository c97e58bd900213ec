"""Log-probabilities in OpenAI's two shapes (pure).

Chat completions: `choice.logprobs = {"content": [{token, logprob, bytes, top_logprobs: [...]}],
"refusal": null}`. Text completions (the legacy shape): `{"tokens", "token_logprobs",
"top_logprobs": [{token: logprob}], "text_offset"}`. A token's text is what the tokenizer decodes
it to on its own; `bytes` is that text's UTF-8 (a token holding part of a character decodes to
U+FFFD, as in OpenAI's `token` field).
"""

from __future__ import annotations

from salut_tui.engine.types import TokenLogprob, TopLogprob


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_entry(lp: TokenLogprob) -> dict:
    entry = _entry(lp.token, lp.logprob)
    entry["top_logprobs"] = [_entry(t.token, t.logprob) for t in lp.top]
    return entry


def chat_logprobs(items: list[TokenLogprob]) -> dict:
    return {"content": [chat_entry(lp) for lp in items], "refusal": None}


def _top_map(top: tuple[TopLogprob, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in top:
        out.setdefault(t.token, t.logprob)  # two ids may decode alike: keep the likelier
    return out


class TextOffsets:
    """Character offsets of the tokens in the completion text, across streamed chunks."""

    def __init__(self, start: int = 0) -> None:
        self.at = start

    def legacy(self, items: list[TokenLogprob]) -> dict:
        offsets = []
        for lp in items:
            offsets.append(self.at)
            self.at += len(lp.token)
        return {
            "tokens": [lp.token for lp in items],
            "token_logprobs": [lp.logprob for lp in items],
            "top_logprobs": [_top_map(lp.top) for lp in items],
            "text_offset": offsets,
        }
