"""Scheduled scans against a real database: the billing system's answers become notices once a day."""

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.db import make_engine, make_session_factory
from gateway import cli, migrate
from gateway.clients.billing import BillingError, HttpBilling
from gateway.conversation import service as conversations
from gateway.delivery import Delivery
from gateway.notices.dispatcher import Dispatcher
from gateway.notices.models import DemoAccount, DemoPackage, Notice, ScanRun
from gateway.notices.scans import SCANS
from gateway.notices.settings import NoticeSettings

SHANGHAI = ZoneInfo("Asia/Shanghai")
MORNING = datetime(2026, 11, 23, 10, 30, tzinfo=SHANGHAI).astimezone(UTC)
TODAY = date(2026, 11, 23)


def dispatcher(session_factory: sessionmaker[Session], **settings: Any) -> Dispatcher:
    return Dispatcher(
        session_factory=session_factory,
        settings=NoticeSettings(api_key=SecretStr("k" * 32), quiet_hours="", scan_at="10:00", **settings),
        delivery=Delivery(),
        rasa=None,
        rasa_ready=lambda: False,
        zone=SHANGHAI,
    )


def seed(db: Session) -> None:
    db.add_all(
        [
            DemoAccount(phone="13700000001", balance=Decimal("3.50")),
            DemoAccount(phone="13700000002", balance=Decimal("58.00")),
            DemoAccount(phone="13700000003", balance=Decimal("80"), points=900, points_expire_on=date(2026, 11, 30)),
            DemoAccount(phone="13700000004", balance=Decimal("80"), points=500, points_expire_on=date(2027, 6, 30)),
            DemoPackage(phone="13700000005", package="5G流量加油包", expires_on=TODAY + timedelta(days=2)),
            DemoPackage(phone="13700000006", package="视频会员", expires_on=TODAY + timedelta(days=20)),
        ]
    )
    db.commit()


def notices_by_phone(db: Session) -> dict[str, str]:
    rows = db.execute(select(Notice.source_id, Notice.name)).all()
    return {source_id: name for source_id, name in rows if source_id.startswith("137")}


def test_each_scan_notifies_exactly_the_customers_it_concerns_once_a_day(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as db:
        seed(db)
    sender = dispatcher(session_factory)

    assert sender.run_due_scans(now=MORNING - timedelta(hours=1)) == []  # before 10:00 nothing runs
    results = {r.scan: r for r in sender.run_due_scans(now=MORNING)}
    assert set(results) == set(SCANS) and all(r.claimed for r in results.values())
    with session_factory() as db:
        assert notices_by_phone(db) == {
            "13700000001": "low_balance",
            "13700000003": "points_expiring",
            "13700000005": "package_expiring",
        }
        texts = {n.source_id: n.text for n in db.scalars(select(Notice))}
        assert "3.50" in texts["13700000001"] and "900" in texts["13700000003"]
        assert "5G流量加油包" in texts["13700000005"]
        assert {r.scan for r in db.scalars(select(ScanRun).where(ScanRun.run_on == TODAY))} == set(SCANS)

    # Later the same day (another poll, another process): claimed already, nothing is asked or sent again.
    assert sender.run_due_scans(now=MORNING + timedelta(hours=3)) == []
    # Run by hand (`kefu notices scan`): the billing system is asked again, the day's keys make it a no-op.
    again = sender.run_scan(SCANS["low_balance"], now=MORNING + timedelta(hours=4), claim=False)
    assert again.found == 1 and again.notices == 0
    with session_factory() as db:
        assert len(notices_by_phone(db)) == 3


def test_a_scan_reaches_the_customer_already_known_by_that_phone(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as db:
        seed(db)
        known = conversations.get_or_create_contact(db_session=db, channel="webchat", source_id="v-known")
        known.phone = "13700000001"
        known.attributes = {"preferred_channel": "webchat"}
        db.commit()
        known_id = known.id
    dispatcher(session_factory).run_scan(SCANS["low_balance"], now=MORNING)
    with session_factory() as db:
        notice = db.scalar(select(Notice).where(Notice.name == "low_balance"))
        assert notice is not None
        assert (notice.contact_id, notice.channel, notice.source_id) == (known_id, "webchat", "v-known")


class _Billing(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        status, body = self.answers.get(path, (404, {"error": "no such path"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def billing_server() -> Iterator[str]:
    """The operator's billing system stands here (a system we do not own): a real socket, canned answers."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Billing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_operator_billing_api_is_scanned_and_its_bad_rows_and_failures_cost_nothing(
    session_factory: sessionmaker[Session], billing_server: str
) -> None:
    _Billing.answers = {
        "/accounts/low-balance": (200, {"items": [{"phone": "13600000001", "balance": "1.20"}, {"phone": "x<>"}]}),
        "/accounts/points-expiring": (503, {"error": "maintenance"}),
        "/packages/expiring": (200, {"items": []}),
    }
    billing = HttpBilling(billing_server, api_key="b" * 32)
    assert billing.low_balances(below=Decimal("10"))[0]["balance"] == "1.20"
    with pytest.raises(BillingError):
        billing.points_expiring(before=TODAY)

    sender = dispatcher(session_factory, billing_url=billing_server, billing_api_key=SecretStr("b" * 32))
    results = {r.scan: r for r in sender.run_due_scans(now=MORNING)}
    assert (results["low_balance"].found, results["low_balance"].notices) == (2, 1)
    assert results["low_balance"].rejected == 1  # a malformed row is logged and skipped
    with session_factory() as db:
        assert [n.source_id for n in db.scalars(select(Notice).where(Notice.name == "low_balance"))] == ["13600000001"]
        failed = db.scalar(select(ScanRun).where(ScanRun.scan == "points_expiring"))
        assert failed is not None and "503" in failed.error


def test_kefu_notices_scan_runs_the_scans_by_hand_and_refuses_unknown_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as db:
        seed(db)
    monkeypatch.setenv("KEFU_DATABASE_URL", database_url)
    monkeypatch.setenv("KEFU_VAR_DIR", str(tmp_path))

    assert cli.main(["notices", "scan", "no_such_scan"]) == 2
    assert cli.main(["notices", "scan", "low_balance", "package_expiring"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["scan"], r["notices"]) for r in printed] == [("low_balance", 1), ("package_expiring", 1)]
    assert not any(r["claimed"] for r in printed)  # by hand: the day's scheduled run is still to come
    assert cli.main(["notices", "scan", "low_balance"]) == 0  # the same day again: nothing new
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["notices"] == 0
    with make_session_factory(engine)() as db:
        assert sorted(notices_by_phone(db).values()) == ["low_balance", "package_expiring"]
    engine.dispose()
