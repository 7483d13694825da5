"""Human agents: accounts, sessions, presence, and the agent API."""
