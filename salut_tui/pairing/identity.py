"""The node's long-term Ed25519 identity, created on first start and kept in the data dir."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from salut_tui.pairing.keys import fingerprint

KEY_FILE = "identity.key"


@dataclass(frozen=True)
class Identity:
    signing_key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def node_id(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature

    @classmethod
    def generate(cls) -> Identity:
        return cls(SigningKey.generate())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Identity:
        """Read `<data_dir>/identity.key`, or create it (mode 0600, written atomically)."""
        path = data_dir / KEY_FILE
        if path.exists():
            seed = path.read_bytes()
            if len(seed) != 32:
                raise ValueError(f"{path}: not a 32-byte Ed25519 seed")
            return cls(SigningKey(seed))
        identity = cls.generate()
        write_private_file(path, bytes(identity.signing_key))
        return identity


def write_private_file(path: Path, data: bytes) -> None:
    """Write a file only the owner can read, atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
