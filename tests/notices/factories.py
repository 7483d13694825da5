"""Notice test data: business events as the operator's systems send them."""

import uuid
from typing import Any


def roaming_event(sender: str, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "roaming.returned_home",
        "key": f"evt-{uuid.uuid4().hex}",
        "customer": {"channel": "rest", "id": sender, "phone": "13900000001"},
        "data": {"package": "港澳日套餐"},
    }
    event.update(overrides)
    return event
