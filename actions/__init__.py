"""Kefu's Rasa action server: run with `rasa run actions --actions actions` from the repository root."""
