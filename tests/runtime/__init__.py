"""The namespaces runtime in real interpreters, in child processes (integration)."""
