"""Pair scoring, library filtering and family/actor attribution."""
