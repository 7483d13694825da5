"""The customer web chat widget: one script tag, a WebSocket with replay, a long-poll fallback."""
