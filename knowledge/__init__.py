"""The knowledge base: Chroma store, ingestion, hybrid retrieval, bundled corpus."""
