"""The operator's billing system: one interface, an HTTP client for the real one and a demo backed by our DB."""

from datetime import date
from decimal import Decimal
from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db import utcnow
from gateway.notices.models import DemoAccount, DemoPackage


class BillingError(Exception):
    """The billing system refused or could not be reached; the decision is recorded, the action retried by staff."""


class Billing(Protocol):
    def close_package(self, *, phone: str, package: str) -> dict[str, Any]:
        """Close a subscription now; returns the billing system's receipt."""

    def low_balances(self, *, below: Decimal) -> list[dict[str, Any]]:
        """Accounts whose balance is under `below`: [{"phone", "balance"}]."""

    def points_expiring(self, *, before: date) -> list[dict[str, Any]]:
        """Accounts with points expiring on or before `before`: [{"phone", "points", "expire_on"}]."""

    def packages_expiring(self, *, before: date) -> list[dict[str, Any]]:
        """Active packages ending on or before `before`: [{"phone", "package", "expire_on"}]."""


class HttpBilling:
    """The operator's billing API (`POST {base}/packages/close`), with a timeout and its own error."""

    def __init__(self, base_url: str, *, api_key: str, timeout: float = 5.0):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close_package(self, *, phone: str, package: str) -> dict[str, Any]:
        """Close a subscription through the operator's API."""
        try:
            response = self._http.post("/packages/close", json={"phone": phone, "package": package})
            response.raise_for_status()
            return dict(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise BillingError(f"billing system: {exc}") from exc

    def low_balances(self, *, below: Decimal) -> list[dict[str, Any]]:
        """`GET {base}/accounts/low-balance?below=`."""
        return self._items("/accounts/low-balance", {"below": str(below)})

    def points_expiring(self, *, before: date) -> list[dict[str, Any]]:
        """`GET {base}/accounts/points-expiring?before=`."""
        return self._items("/accounts/points-expiring", {"before": before.isoformat()})

    def packages_expiring(self, *, before: date) -> list[dict[str, Any]]:
        """`GET {base}/packages/expiring?before=`."""
        return self._items("/packages/expiring", {"before": before.isoformat()})

    def _items(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            response = self._http.get(path, params=params)
            response.raise_for_status()
            items = response.json()["items"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BillingError(f"billing system: {exc}") from exc
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("phone") for i in items):
            raise BillingError(f"billing system: {path} did not return items with a phone")
        return items


class DemoBilling:
    """Subscriptions kept in our own database, for the demo and the tests."""

    def __init__(self, db_session: Session):
        self._db = db_session

    def close_package(self, *, phone: str, package: str) -> dict[str, Any]:
        """Close the customer's active package of that name."""
        row = self._db.scalar(
            select(DemoPackage).where(
                DemoPackage.phone == phone, DemoPackage.package == package, DemoPackage.status == "active"
            )
        )
        if row is None:
            raise BillingError(f"no active {package} for {phone}")
        row.status = "closed"
        row.closed_at = utcnow()
        self._db.flush()
        return {"closed": True, "package": package, "closed_at": row.closed_at.isoformat()}

    def low_balances(self, *, below: Decimal) -> list[dict[str, Any]]:
        """Demo accounts under the balance line."""
        rows = self._db.scalars(select(DemoAccount).where(DemoAccount.balance < below).order_by(DemoAccount.id))
        return [{"phone": r.phone, "balance": f"{r.balance:.2f}"} for r in rows]

    def points_expiring(self, *, before: date) -> list[dict[str, Any]]:
        """Demo accounts with points ending by `before`."""
        rows = self._db.scalars(
            select(DemoAccount)
            .where(DemoAccount.points > 0, DemoAccount.points_expire_on.is_not(None))
            .where(DemoAccount.points_expire_on <= before)
            .order_by(DemoAccount.id)
        )
        return [{"phone": r.phone, "points": r.points, "expire_on": str(r.points_expire_on)} for r in rows]

    def packages_expiring(self, *, before: date) -> list[dict[str, Any]]:
        """Active demo packages ending by `before`."""
        rows = self._db.scalars(
            select(DemoPackage)
            .where(DemoPackage.status == "active", DemoPackage.expires_on.is_not(None))
            .where(DemoPackage.expires_on <= before)
            .order_by(DemoPackage.id)
        )
        return [{"phone": r.phone, "package": r.package, "expire_on": str(r.expires_on)} for r in rows]


def make_billing(*, url: str, api_key: str | None, db_session: Session) -> Billing:
    """The operator's billing API when configured, else the demo billing system in our database."""
    if url and api_key:
        return HttpBilling(url, api_key=api_key)
    return DemoBilling(db_session)
