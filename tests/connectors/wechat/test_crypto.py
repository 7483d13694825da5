"""Signatures and the AES envelope against vectors made by openssl/sha1sum (make_vectors.sh)."""

import base64
import json
from pathlib import Path

import pytest

from connectors.wechat import crypto

V = json.loads((Path(__file__).parent / "vectors.json").read_text(encoding="utf-8"))
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


def test_server_check_signature_matches_the_vector() -> None:
    assert crypto.signature(V["token"], V["timestamp"], V["nonce"]) == V["signature"]
    crypto.check_signature(V["signature"], V["token"], V["timestamp"], V["nonce"])
    with pytest.raises(crypto.WechatCryptoError):
        crypto.check_signature(V["signature"], V["token"], V["timestamp"], "other-nonce")


def test_msg_signature_covers_the_ciphertext() -> None:
    assert crypto.signature(V["token"], V["timestamp"], V["nonce"], V["encrypt"]) == V["msg_signature"]


def test_encrypt_and_decrypt_match_the_vector() -> None:
    envelope = crypto.Envelope(V["aes_key"], V["appid"])
    assert envelope.encrypt(V["message"], random16=V["random16"].encode()) == V["encrypt"]
    assert envelope.decrypt(V["encrypt"]) == V["message"]


def test_another_app_id_is_refused() -> None:
    with pytest.raises(crypto.WechatCryptoError):
        crypto.Envelope(V["aes_key"], "wx0000000000000000").decrypt(V["encrypt"])


def test_tampered_ciphertext_is_refused() -> None:
    raw = bytearray(base64.b64decode(V["encrypt"]))
    raw[-20] ^= 0x01
    with pytest.raises(crypto.WechatCryptoError):
        crypto.Envelope(V["aes_key"], V["appid"]).decrypt(base64.b64encode(bytes(raw)).decode())
    with pytest.raises(crypto.WechatCryptoError):
        crypto.Envelope(V["aes_key"], V["appid"]).decrypt("not base64!")


def test_previous_key_still_decrypts_after_a_rotation() -> None:
    rotated = crypto.Envelope(OTHER_KEY, V["appid"], previous_keys=(V["aes_key"],))
    assert rotated.decrypt(V["encrypt"]) == V["message"]
    # New messages go out under the new key only.
    fresh = rotated.encrypt("你好")
    assert crypto.Envelope(OTHER_KEY, V["appid"]).decrypt(fresh) == "你好"
    with pytest.raises(crypto.WechatCryptoError):
        crypto.Envelope(V["aes_key"], V["appid"]).decrypt(fresh)
    with pytest.raises(crypto.WechatCryptoError):
        crypto.Envelope(OTHER_KEY, V["appid"]).decrypt(V["encrypt"])
