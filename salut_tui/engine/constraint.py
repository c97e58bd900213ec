"""What a request constrains its output to (`response_format`): a pure value, no grammar library.

It rides on `GenerationRequest.constraint`, crosses the peer link as JSON (cluster/wire.py) and
is compiled into a logits processor only on the engine thread (engine/structured.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# `{"type": "json_object"}`: any JSON object, as OpenAI's JSON mode promises.
ANY_OBJECT_SCHEMA = '{"type":"object"}'


@dataclass(frozen=True, slots=True)
class JsonConstraint:
    """The answer is JSON matching `schema` (JSON Schema as canonical JSON text)."""

    schema: str = ANY_OBJECT_SCHEMA
    name: str = ""  # json_schema.name: for messages only

    @classmethod
    def for_schema(cls, schema: dict[str, Any], name: str = "") -> JsonConstraint:
        # Key order kept: properties are generated in the order the schema declares them.
        return cls(json.dumps(schema, separators=(",", ":")), name)

    def to_json(self) -> dict[str, str]:
        return {"schema": self.schema, "name": self.name}

    @classmethod
    def from_json(cls, body: object) -> JsonConstraint | None:
        """A peer's form of it; anything malformed raises ValueError (refused like bad sampling)."""
        if body is None:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise ValueError("constraint must be an object with a schema string")
        schema = body["schema"]
        if not isinstance(json.loads(schema), dict):
            raise ValueError("constraint.schema must be a JSON object")
        return cls(schema, str(body.get("name", "")))
