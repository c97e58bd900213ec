"""Pairing codes: a number and two words, easy to read aloud and to type ("42-maple-rocket").

The code is the PAKE password, so its strength only has to resist online guessing, and the
protocol allows one guess per code: 90 * 128 * 128 (about 2^20.5) codes make a lucky guess
one in 1.5 million.
"""

from __future__ import annotations

import secrets

WORDS = (
    "acid", "acorn", "actor", "adobe", "alarm", "album", "amber", "angle", "apple", "apron",
    "arrow", "atlas", "audio", "bacon", "badge", "bagel", "baker", "bamboo", "banjo", "basil",
    "beach", "berry", "bison", "blade", "blues", "bonus", "brick", "bread", "cabin", "cable",
    "camel", "candy", "canoe", "cargo", "cedar", "chalk", "chess", "cider", "cloud", "clover",
    "cobra", "comet", "coral", "crane", "crown", "daisy", "delta", "denim", "diner", "disco",
    "dough", "dream", "eagle", "earth", "ember", "fable", "falcon", "fern", "fiber", "flame",
    "flute", "forest", "fox", "frost", "gecko", "ginger", "glove", "grape", "gravy", "harbor",
    "hazel", "heron", "honey", "igloo", "indigo", "island", "ivory", "jacket", "jelly", "jewel",
    "juice", "kayak", "kettle", "koala", "lemon", "lilac", "llama", "lotus", "magnet", "mango",
    "maple", "marble", "melon", "meteor", "mint", "mocha", "moose", "nectar", "noodle", "oasis",
    "olive", "onion", "orbit", "otter", "panda", "paper", "pearl", "pepper", "piano", "pilot",
    "plum", "polka", "quartz", "radio", "raven", "river", "robot", "rocket", "salmon", "silver",
    "sugar", "tiger", "tulip", "velvet", "violin", "walnut", "yogurt", "zebra",
)  # fmt: skip
assert len(WORDS) == 128 and len(set(WORDS)) == 128


def new_code() -> str:
    number = 10 + secrets.randbelow(90)
    return f"{number}-{secrets.choice(WORDS)}-{secrets.choice(WORDS)}"


def normalise_code(text: str) -> str | None:
    """The canonical form of what a person typed, or None if it cannot be a code.

    Accepts any case and spaces or dashes between the parts ("42 Maple rocket").
    """
    parts = text.strip().lower().replace(" ", "-").split("-")
    parts = [p for p in parts if p]
    if len(parts) != 3 or not parts[0].isdigit() or not 10 <= int(parts[0]) <= 99:
        return None
    if parts[1] not in WORDS or parts[2] not in WORDS:
        return None
    return "-".join(parts)
