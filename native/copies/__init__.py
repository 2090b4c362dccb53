"""The copies runtime: each interpreter runs from its own renamed copy of libpython, every
extension from its own relinked copy, all in the base namespace (``runtime.py``; the copies of
libpython and of extensions are made from templates by ``templates.py``; binding ``_copies.c``).
Not to be confused with ``interpkit.shims.private_copy``, one extension copied per interpreter."""
