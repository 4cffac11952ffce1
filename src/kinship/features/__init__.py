"""Per-function features: tokens, MinHash sketches, exact hashes."""
