"""Benchmarks for kinship against reference tools on the dev corpus (see bench/README.md)."""
