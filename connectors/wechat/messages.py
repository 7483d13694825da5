"""WeChat's XML: parsing inbound pushes safely (no DTD, no entities, a size cap) and building replies."""

import time
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_FIELDS = 64


class BadXml(ValueError):
    """Malformed, oversized or hostile XML."""


@dataclass(frozen=True)
class Inbound:
    """The fields of one push we act on; everything else stays in `fields` for the log."""

    fields: dict[str, str]

    def get(self, name: str) -> str:
        """A top-level field's text, empty when absent."""
        return self.fields.get(name, "")

    @property
    def msg_type(self) -> str:
        """text, voice, event, image…"""
        return self.get("MsgType").lower()

    @property
    def openid(self) -> str:
        """The customer: FromUserName."""
        return self.get("FromUserName")

    @property
    def dedup_id(self) -> str:
        """MsgId for messages; events have none, so FromUserName + CreateTime + Event identifies them."""
        if self.msg_type == "event":
            return f"{self.openid}:{self.get('CreateTime')}:{self.get('Event')}"
        return self.get("MsgId") or f"{self.openid}:{self.get('CreateTime')}:{self.msg_type}"


def parse(body: bytes, *, max_bytes: int) -> dict[str, str]:
    """The top-level fields of a `<xml>` document; raises BadXml for anything else."""
    if len(body) > max_bytes:
        raise BadXml(f"body of {len(body)} bytes exceeds {max_bytes}")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, UnicodeDecodeError, ValueError) as exc:
        raise BadXml(f"unparseable XML: {type(exc).__name__}: {exc}") from exc
    if root.tag != "xml":
        raise BadXml(f"root element is <{root.tag}>, not <xml>")
    children = list(root)
    if len(children) > MAX_FIELDS:
        raise BadXml(f"{len(children)} fields is more than a WeChat push has")
    return {child.tag: (child.text or "").strip() for child in children}


def cdata(value: str) -> str:
    """A CDATA section holding `value` verbatim, even if it contains `]]>`."""
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(*, to: str, account: str, content: str, now: int | None = None) -> str:
    """A passive text reply to the customer `to` from the official account `account`."""
    return (
        f"<xml><ToUserName>{cdata(to)}</ToUserName><FromUserName>{cdata(account)}</FromUserName>"
        f"<CreateTime>{now if now is not None else int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content>{cdata(content)}</Content></xml>"
    )


def encrypted_reply(*, encrypt: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    """The safe-mode envelope around an encrypted passive reply."""
    return (
        f"<xml><Encrypt>{cdata(encrypt)}</Encrypt><MsgSignature>{cdata(msg_signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>"
    )
