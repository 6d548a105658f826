"""Field encryption: Fernet tokens under a MultiFernet so keys can rotate.

The first key encrypts; every key decrypts. Rotating means putting a new key first, re-encrypting
(``Cipher.rotate``), then dropping the old key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CipherError(ValueError):
    """An encryption key that cannot be used."""


class Cipher:
    """Encrypts and decrypts text fields."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise CipherError("no encryption key given")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise CipherError("not a valid Fernet key (make one with `headsup keygen`)") from exc
        self._newest = keys[0].strip().encode()

    @classmethod
    def from_setting(cls, value: str) -> Cipher:
        """Build from the config value: one key, or several separated by commas (newest first)."""
        return cls([k for k in value.split(",") if k.strip()])

    def derive(self, purpose: str) -> bytes:
        """A secret for `purpose` (e.g. pseudonyms in logs), derived from the newest key:
        stable for as long as that key is, and useless for decrypting anything."""
        return hmac.new(self._newest, purpose.encode(), hashlib.sha256).digest()

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise CipherError("stored data cannot be decrypted with the configured keys") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise CipherError("stored data cannot be decrypted with the configured keys") from exc


def local_key(path: Path) -> str:
    """Read the console's local key file, creating it (owner-only) on first use."""
    if path.exists():
        return path.read_text().strip()
    key = Cipher.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key
