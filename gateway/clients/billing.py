"""The operator's billing system: one interface, an HTTP client for the real one and a demo backed by our DB."""

from typing import Any, Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db import utcnow
from gateway.notices.models import DemoPackage


class BillingError(Exception):
    """The billing system refused or could not be reached; the decision is recorded, the action retried by staff."""


class Billing(Protocol):
    def close_package(self, *, phone: str, package: str) -> dict[str, Any]:
        """Close a subscription now; returns the billing system's receipt."""


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
