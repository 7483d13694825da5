"""Knowledge fixtures: one embedder per test run (loading it is the slow part)."""

import pytest

from knowledge.retrieval import Embedder, UseEmbedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return UseEmbedder()
