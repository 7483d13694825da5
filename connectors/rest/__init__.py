"""The REST channel: the contract integrators and tests use."""
