"""Named errors of the namespaces runtime; each str() is one line naming the cause."""
from __future__ import annotations

from interpkit.core.errors import InterpkitError, RuntimeUnavailable


class LibpythonNotShared(RuntimeUnavailable):
    """The running Python links CPython statically, so there is no libpython to dlmopen."""


class NamespaceLimitError(InterpkitError):
    """glibc ran out of link-map namespaces ("too many interpreters")."""


class StaticTLSExhausted(NamespaceLimitError):
    """glibc ran out of static TLS space for one more namespace's libraries."""


class RuntimeStartError(InterpkitError):
    """An interpreter could not be loaded, initialized or bootstrapped."""


class InterpreterClosed(InterpkitError):
    """The interpreter was stopped, or lost to a request that never came back."""


class InterpreterTimeout(InterpkitError, TimeoutError):
    """A request got no answer in time."""


class RemoteError(InterpkitError):
    """Code run inside an interpreter raised; carries the remote traceback text.

    ``type_name`` is the remote exception's qualified type name, ``remote_message`` its
    ``str()`` and ``remote_traceback`` the formatted traceback from inside the interpreter.
    """

    def __init__(self, interpreter: int, type_name: str, message: str, traceback: str) -> None:
        super().__init__(f"interpreter {interpreter} raised {type_name}: {message}")
        self.interpreter = interpreter
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = traceback
        # Shown under the host traceback, so the remote frames are not lost in test output.
        self.add_note(f"Remote traceback (interpreter {interpreter}):\n{traceback.rstrip()}")
