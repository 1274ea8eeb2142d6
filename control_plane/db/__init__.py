"""Persistence: the engine, the ORM models and the one mapping between rows and rule-engine models."""
