"""Outbound channels with no inbound side of their own: SMS (the demo records instead of sending)."""
