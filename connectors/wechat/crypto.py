"""WeChat's message signatures and the AES-CBC envelope of safe mode (EncodingAESKey).

The envelope: AES-256-CBC, key = base64(EncodingAESKey + "="), IV = the key's first 16 bytes, plaintext =
16 random bytes + 4-byte big-endian length + message + app id, PKCS#7 padded to 32-byte blocks.
"""

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class WechatCryptoError(Exception):
    """A signature, envelope or app id that does not check out."""


def signature(*parts: str) -> str:
    """sha1 over the parts sorted and concatenated (the server-URL check and `msg_signature` alike)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(expected: str, *parts: str) -> None:
    """Raise unless `expected` is the signature of `parts` (constant-time compare)."""
    if not hmac.compare_digest(signature(*parts).encode(), expected.encode()):
        raise WechatCryptoError("bad signature")


class Envelope:
    """Encrypts and decrypts message bodies for one app id; older keys still decrypt after a rotation."""

    def __init__(self, aes_key: str, appid: str, *, previous_keys: tuple[str, ...] = ()):
        self._keys = [_key(aes_key)] + [_key(k) for k in previous_keys]
        self._appid = appid.encode()

    def encrypt(self, message: str, *, random16: bytes | None = None) -> str:
        """The base64 ciphertext of `message` under the current key."""
        body = message.encode()
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(body)) + body + self._appid
        pad = BLOCK - len(plain) % BLOCK
        plain += bytes([pad]) * pad
        key = self._keys[0]
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """The message inside `encrypted`, checked for padding, length and app id under any known key."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WechatCryptoError("ciphertext is not base64") from exc
        if not data or len(data) % 16:
            raise WechatCryptoError("ciphertext length is not a multiple of the block size")
        for key in self._keys:
            decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
            message = self._open(decryptor.update(data) + decryptor.finalize())
            if message is not None:
                return message
        raise WechatCryptoError("message does not decrypt to this app id under any configured key")

    def _open(self, plain: bytes) -> str | None:
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            return None
        plain = plain[:-pad]
        if len(plain) < 20:
            return None
        (length,) = struct.unpack(">I", plain[16:20])
        body, appid = plain[20 : 20 + length], plain[20 + length :]
        if len(body) != length or not hmac.compare_digest(appid, self._appid):
            return None
        try:
            return body.decode()
        except UnicodeDecodeError:
            return None


def _key(aes_key: str) -> bytes:
    key = base64.b64decode(aes_key + "=")
    if len(key) != 32:
        raise ValueError("an EncodingAESKey decodes to 32 bytes")
    return key
