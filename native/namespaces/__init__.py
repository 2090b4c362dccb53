"""The namespaces runtime: each interpreter is libpython loaded again with dlmopen into a link-map
namespace of its own, served by one thread (``runtime.py``; C side ``runtime.c``, binding
``_interpkit.c``, C API ``include/interpkit.h``)."""
