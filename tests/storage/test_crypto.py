"""Field encryption: Fernet under MultiFernet, so keys can be rotated without losing data."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from storage.crypto import Cipher, CipherError, local_key

SECRET = "I can't sleep and the governors meet on Friday"


def test_round_trip():
    """What is encrypted decrypts to the same text."""
    cipher = Cipher([Cipher.generate_key()])
    assert cipher.decrypt(cipher.encrypt(SECRET)) == SECRET


def test_round_trip_keeps_non_ascii_text():
    """Accents and emoji survive encryption."""
    cipher = Cipher([Cipher.generate_key()])
    text = "Zoë’s école 🙂"
    assert cipher.decrypt(cipher.encrypt(text)) == text


def test_ciphertext_does_not_contain_the_plaintext():
    """The stored token reveals neither the text nor any of its words."""
    cipher = Cipher([Cipher.generate_key()])
    token = cipher.encrypt(SECRET)
    assert SECRET not in token
    assert not any(word in token for word in ("sleep", "governors", "Friday"))


def test_same_text_encrypts_differently_each_time():
    """Two tokens for the same text differ (no equality leak between rows)."""
    cipher = Cipher([Cipher.generate_key()])
    assert cipher.encrypt(SECRET) != cipher.encrypt(SECRET)


def test_token_is_a_fernet_token_under_the_first_key():
    """The first key encrypts: a plain Fernet with that key can read the token."""
    first, second = Cipher.generate_key(), Cipher.generate_key()
    token = Cipher([first, second]).encrypt(SECRET)
    assert Fernet(first.encode()).decrypt(token.encode()).decode() == SECRET


def test_old_token_decrypts_under_new_and_old_keys():
    """After a new key is put first, tokens made under the old key still decrypt."""
    old, new = Cipher.generate_key(), Cipher.generate_key()
    token = Cipher([old]).encrypt(SECRET)
    assert Cipher.from_setting(f"{new},{old}").decrypt(token) == SECRET


def test_rotate_reencrypts_under_the_new_key():
    """rotate() gives a token the new key alone can decrypt, and the old key alone cannot."""
    old, new = Cipher.generate_key(), Cipher.generate_key()
    token = Cipher([old]).encrypt(SECRET)
    rotated = Cipher.from_setting(f"{new},{old}").rotate(token)
    assert rotated != token
    assert Cipher([new]).decrypt(rotated) == SECRET
    with pytest.raises(CipherError):
        Cipher([old]).decrypt(rotated)


def test_rotate_of_a_token_under_an_unknown_key_fails():
    """rotate() cannot rescue a token no configured key made."""
    stranger = Cipher([Cipher.generate_key()]).encrypt(SECRET)
    with pytest.raises(CipherError):
        Cipher([Cipher.generate_key()]).rotate(stranger)


def test_wrong_key_raises_cipher_error():
    """Decrypting with a key that did not encrypt raises CipherError (not InvalidToken)."""
    token = Cipher([Cipher.generate_key()]).encrypt(SECRET)
    with pytest.raises(CipherError, match="cannot be decrypted"):
        Cipher([Cipher.generate_key()]).decrypt(token)


def test_tampered_token_raises_cipher_error():
    """A token changed in storage is refused, not decrypted to garbage."""
    cipher = Cipher([Cipher.generate_key()])
    token = cipher.encrypt(SECRET)
    tampered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    with pytest.raises(CipherError):
        cipher.decrypt(tampered)


@pytest.mark.parametrize(
    "setting",
    ["not-a-key", "x" * 44, Cipher.generate_key()[:-2], "", " , ,"],
    ids=["word", "wrong-alphabet", "truncated", "empty", "only-commas"],
)
def test_invalid_key_setting_raises_cipher_error(setting):
    """A setting that is not (a list of) Fernet keys raises CipherError."""
    with pytest.raises(CipherError):
        Cipher.from_setting(setting)


def test_one_bad_key_among_good_ones_raises_cipher_error():
    """A rotation list with one broken key is refused as a whole."""
    with pytest.raises(CipherError, match="headsup keygen"):
        Cipher.from_setting(f"{Cipher.generate_key()},oops")


def test_keys_in_a_setting_may_be_spaced():
    """Spaces around commas are ignored, so the setting can be written readably."""
    old, new = Cipher.generate_key(), Cipher.generate_key()
    token = Cipher([old]).encrypt(SECRET)
    assert Cipher.from_setting(f" {new} , {old} ").decrypt(token) == SECRET


def test_generate_key_makes_distinct_usable_keys():
    """generate_key() gives a fresh valid key each call."""
    first, second = Cipher.generate_key(), Cipher.generate_key()
    assert first != second
    Fernet(first.encode())


def test_local_key_creates_an_owner_only_file(tmp_path):
    """On first use, local_key writes a new key to a file only its owner can read (0600)."""
    path = tmp_path / "headsup.db.key"
    key = local_key(path)
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Cipher([key])  # a usable key


def test_local_key_is_reused(tmp_path):
    """A second call returns the same key and leaves the file as it was."""
    path = tmp_path / "headsup.db.key"
    first = local_key(path)
    written = path.stat().st_mtime_ns, path.read_text()
    assert local_key(path) == first
    assert (path.stat().st_mtime_ns, path.read_text()) == written


def test_local_key_decrypts_what_it_encrypted_across_restarts(tmp_path):
    """Data encrypted with the local key can be read by a cipher built later from the same file."""
    path = tmp_path / "headsup.db.key"
    token = Cipher([local_key(path)]).encrypt(SECRET)
    assert Cipher([local_key(path)]).decrypt(token) == SECRET


def test_derived_secrets_depend_on_the_newest_key_and_the_purpose():
    """derive() is stable for one key and purpose, and differs with either."""
    new, old = Cipher.generate_key(), Cipher.generate_key()
    cipher = Cipher([new, old])
    assert cipher.derive("logs") == Cipher([new]).derive("logs")
    assert cipher.derive("logs") != Cipher([old]).derive("logs")
    assert cipher.derive("logs") != cipher.derive("other")
