"""WeChat's XML, literally as WeChat sends it, and the hostile variants that must not get through."""

import pytest

from connectors.wechat import messages

TEXT = b"""<xml>
  <ToUserName><![CDATA[gh_kefu]]></ToUserName>
  <FromUserName><![CDATA[oUser-openid_1]]></FromUserName>
  <CreateTime>1767225600</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[\xe6\x80\x8e\xe4\xb9\x88\xe6\x9f\xa5\xe8\xaf\xa2\xe8\xaf\x9d\xe8\xb4\xb9\xe4\xbd\x99\xe9\xa2\x9d]]></Content>
  <MsgId>1234567890123456</MsgId>
</xml>"""
VOICE = """<xml><ToUserName><![CDATA[gh_kefu]]></ToUserName><FromUserName><![CDATA[oUser2]]></FromUserName>
<CreateTime>1767225601</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m1]]></MediaId>
<Format><![CDATA[amr]]></Format><Recognition><![CDATA[转人工]]></Recognition><MsgId>42</MsgId></xml>""".encode()
SUBSCRIBE = b"""<xml><ToUserName><![CDATA[gh_kefu]]></ToUserName><FromUserName><![CDATA[oUser3]]></FromUserName>
<CreateTime>1767225602</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><Content>&lol3;</Content></xml>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><Content>&xxe;</Content></xml>"""


def test_text_message_fields() -> None:
    inbound = messages.Inbound(messages.parse(TEXT, max_bytes=65536))
    assert inbound.msg_type == "text" and inbound.openid == "oUser-openid_1"
    assert inbound.get("Content") == "怎么查询话费余额"
    assert inbound.dedup_id == "1234567890123456"


def test_voice_carries_recognition_and_events_are_keyed_by_sender_and_time() -> None:
    voice = messages.Inbound(messages.parse(VOICE, max_bytes=65536))
    assert voice.get("Recognition") == "转人工" and voice.dedup_id == "42"
    event = messages.Inbound(messages.parse(SUBSCRIBE, max_bytes=65536))
    assert event.dedup_id == "oUser3:1767225602:subscribe"


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, EXTERNAL, b"<xml><Content>unclosed</xml>", b"", b"<html></html>", b"\xff\xfe<xml/>"],
    ids=["entity-expansion", "external-entity", "malformed", "empty", "wrong-root", "bad-encoding"],
)
def test_hostile_or_broken_xml_is_refused(body: bytes) -> None:
    with pytest.raises(messages.BadXml):
        messages.parse(body, max_bytes=65536)


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(messages.BadXml, match="exceeds"):
        messages.parse(b"<xml><Content>" + b"a" * 70000 + b"</Content></xml>", max_bytes=65536)


def test_reply_survives_cdata_terminators_in_the_text() -> None:
    xml = messages.text_reply(to="oUser", account="gh_kefu", content="a]]>b<c>", now=1)
    parsed = messages.parse(xml.encode(), max_bytes=65536)
    assert parsed["Content"] == "a]]>b<c>" and parsed["MsgType"] == "text" and parsed["ToUserName"] == "oUser"
