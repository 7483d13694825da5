"""The admin knowledge console: entries, versions, knowledge gaps and the retrieval test bench."""
