"""Search over the catalogue: filters on its metadata (where.py)."""
