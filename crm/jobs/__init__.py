"""Background jobs: a ``jobs`` row is the user-visible truth, huey carries only its id (docs/architecture.md)."""
