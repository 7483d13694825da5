"""Shared foundations: settings, database and logging."""
