/* binding.h -- what the CPython bindings of the C runtimes share (host side,
 * host GIL held): the NativeError exception and the status constants, so
 * `_interpkit` and `_copies` report failures with the same type shape and the
 * same numbers. */
#ifndef IK_BINDING_H
#define IK_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "status.h"

/* Create `<module>.NativeError(status, index, message)`, add it to the
 * module and return a new reference (NULL with an exception set). */
PyObject *ik_binding_add_error(PyObject *module, const char *qualified_name);

/* Add the ERR_* and TEARDOWN_* constants; 0 or -1. */
int ik_binding_add_constants(PyObject *module);

/* Raise native_error(err->status, err->index, err->message); returns NULL. */
PyObject *ik_binding_raise(PyObject *native_error, const ik_error *err);

#endif /* IK_BINDING_H */
