"""bienc: make local corpora searchable, deduplicable and clusterable by meaning."""

__version__ = "0.1.0"
