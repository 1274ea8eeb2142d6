"""Flagyard syncer: built by its own issue; nothing here yet."""
