"""Thin HTTP routes: parse, call the service, shape the answer."""
