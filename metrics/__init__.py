"""Retrieval metrics on score matrices (queries x gallery, higher = more similar)."""
