"""Proactive notices: business events become notices, delivered durably, answered with one tap."""
