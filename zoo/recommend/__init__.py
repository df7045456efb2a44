"""Content-based music recommendation: nearest neighbours over track embeddings."""
