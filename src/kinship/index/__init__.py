"""LSH candidate search over MinHash sketches, and exact-hash lookup."""
