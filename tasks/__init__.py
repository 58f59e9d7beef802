"""Task definitions and verifiers (installed as ``harness.tasks``)."""
