"""Scheduled scans: once a day the billing system is asked who should hear from us (low balance, points
expiring this month, a package about to end), and each answer becomes a business event like any other.

Scans are data. A scan's events carry an idempotency key made of the scan, the phone and the day, so a
scan run twice on one day (a retry, a second gateway process) sends nothing twice; the per-day claim row
(`ScanRun`) keeps processes from even asking twice.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from gateway.clients.billing import Billing
from gateway.notices.settings import NoticeSettings


@dataclass(frozen=True)
class Scan:
    name: str
    event_type: str
    # Ask the billing system: (billing, settings, today) -> [{"phone", ...event data}]
    query: Callable[[Billing, NoticeSettings, date], list[dict[str, Any]]]


def _first_of_next_month(today: date) -> date:
    return (today.replace(day=28) + timedelta(days=4)).replace(day=1)


SCANS: dict[str, Scan] = {
    scan.name: scan
    for scan in (
        Scan(
            name="low_balance",
            event_type="balance.low",
            query=lambda billing, settings, today: billing.low_balances(below=settings.low_balance_below),
        ),
        Scan(
            name="points_expiring",
            event_type="points.expiring",
            # "This month": points that lapse before the month is out.
            query=lambda billing, settings, today: billing.points_expiring(
                before=_first_of_next_month(today) - timedelta(days=1)
            ),
        ),
        Scan(
            name="package_expiring",
            event_type="package.expiring",
            query=lambda billing, settings, today: billing.packages_expiring(
                before=today + timedelta(days=settings.package_expiring_days)
            ),
        ),
    )
}
