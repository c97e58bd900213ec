"""The node's long-term Ed25519 identity, created on first start and kept in the data dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from salut_tui.pairing.files import DataFileError, read_private_file, write_private_file
from salut_tui.pairing.keys import fingerprint

__all__ = ["KEY_FILE", "Identity", "write_private_file"]

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
        """Read `<data_dir>/identity.key`, or create it (mode 0600, written atomically).

        A key file that group or others can read is fixed to 0600 with a warning (see
        `read_private_file`): refusing to start would not un-leak it, and the warning says so.
        """
        path = data_dir / KEY_FILE
        if path.exists() or path.is_symlink():
            seed = read_private_file(path)
            if len(seed) != 32:
                raise DataFileError(
                    f"{path} is not a 32-byte Ed25519 seed: move it aside to start with a new "
                    "identity (paired peers must then pair with this node again)"
                )
            return cls(SigningKey(seed))
        identity = cls.generate()
        write_private_file(path, bytes(identity.signing_key))
        return identity
