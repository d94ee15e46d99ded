"""Test doubles: stand-ins for what the tests cannot have here (a Kubernetes API server). Not shipped."""
