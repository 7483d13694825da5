"""The composition root: the FastAPI app, the CLI, and the wiring of every domain."""
