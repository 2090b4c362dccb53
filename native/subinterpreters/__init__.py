"""The subinterpreters runtime: CPython 3.12+ subinterpreters, driven in a sandboxed child running
another Python (``runtime.py``; the child's side is ``interpkit.native.guest.subinterp_driver``)."""
