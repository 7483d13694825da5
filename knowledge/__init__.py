"""The customerised knowledge base: entries, versions, audit, and hybrid retrieval."""
