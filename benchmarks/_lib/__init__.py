"""Helpers shared by benchmark scripts (not questions of their own)."""
