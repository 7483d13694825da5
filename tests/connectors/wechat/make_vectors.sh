#!/bin/bash
# Known-answer vectors from openssl + coreutils (independent of connectors/wechat/crypto.py).
set -euo pipefail
export LC_ALL=C
TOKEN=kefuTestToken2026
TS=1767225600
NONCE=739201845
AESKEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
APPID=wx5823bf96d3bd56c7
RANDOM16=0123456789abcdef
MSG='<xml><ToUserName><![CDATA[gh_kefu]]></ToUserName><FromUserName><![CDATA[oUser-openid_1]]></FromUserName><CreateTime>1767225600</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[怎么查询话费余额？]]></Content><MsgId>24601</MsgId></xml>'
KEYHEX=$(printf '%s=' "$AESKEY" | base64 -d | xxd -p -c 64)
IVHEX=${KEYHEX:0:32}
LEN=$(printf '%s' "$MSG" | wc -c)
{ printf '%s' "$RANDOM16"; printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((LEN>>24&255)) $((LEN>>16&255)) $((LEN>>8&255)) $((LEN&255)))"; printf '%s' "$MSG"; printf '%s' "$APPID"; } > plain.bin
PLEN=$(stat -c %s plain.bin); PAD=$((32 - PLEN % 32))
for _ in $(seq $PAD); do printf "$(printf '\\x%02x' $PAD)"; done >> plain.bin
ENC=$(openssl enc -aes-256-cbc -K "$KEYHEX" -iv "$IVHEX" -nopad -in plain.bin | base64 -w0)
SIG=$(printf '%s\n' "$TOKEN" "$TS" "$NONCE" | sort | tr -d '\n' | sha1sum | cut -d' ' -f1)
MSIG=$(printf '%s\n' "$TOKEN" "$TS" "$NONCE" "$ENC" | sort | tr -d '\n' | sha1sum | cut -d' ' -f1)
jq -n --arg token "$TOKEN" --arg ts "$TS" --arg nonce "$NONCE" --arg aes_key "$AESKEY" --arg appid "$APPID" \
  --arg random16 "$RANDOM16" --arg message "$MSG" --arg encrypt "$ENC" --arg signature "$SIG" --arg msg_signature "$MSIG" \
  '{generator: "openssl enc -aes-256-cbc -nopad (manual PKCS#7 to 32 bytes) + sha1sum over sorted parts", token: $token, timestamp: $ts, nonce: $nonce, aes_key: $aes_key, appid: $appid, random16: $random16, message: $message, encrypt: $encrypt, signature: $signature, msg_signature: $msg_signature}'
