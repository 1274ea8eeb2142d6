"""The admin REST API (FastAPI), versioned under ``/api/v1``."""
