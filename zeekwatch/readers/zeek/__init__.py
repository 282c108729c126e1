"""Zeek."""
