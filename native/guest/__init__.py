"""Guest code: modules that run inside the runtimes' interpreters and inside sandboxed children.

Standard library only (a guest may run under another Python where interpkit is not installed,
or inside an interpreter that must not load the host's C extensions), and nothing here imports
the rest of interpkit.
"""
