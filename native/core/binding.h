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

/* The module state both bindings keep (multi-phase init, per module object):
 * their one type (Runtime, Interpreter) and NativeError. */
typedef struct {
    PyTypeObject *type;
    PyObject *native_error;     /* NativeError(status, index, message) */
} ik_binding_state;

ik_binding_state *ik_binding_state_of(PyObject *module);

/* Py_mod_exec's work: create the module's type from `spec`, NativeError and
 * the constants; 0 or -1. */
int ik_binding_exec(PyObject *module, PyType_Spec *spec, const char *error_name);

/* m_traverse, m_clear and m_free of a module whose state is ik_binding_state. */
int ik_binding_traverse(PyObject *module, visitproc visit, void *arg);
int ik_binding_clear(PyObject *module);
void ik_binding_free(void *module);

/* The slots that declare what the state allows: it is per module object, so
 * own-GIL interpreters (3.12+) and free-threaded builds (3.13+) may import
 * the binding too; what our own IK102 asks of every extension. */
#ifdef Py_mod_multiple_interpreters
#define IK_BINDING_MULTIPLE_INTERPRETERS_SLOT \
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#else
#define IK_BINDING_MULTIPLE_INTERPRETERS_SLOT
#endif
#ifdef Py_mod_gil
#define IK_BINDING_GIL_SLOT {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#else
#define IK_BINDING_GIL_SLOT
#endif
#define IK_BINDING_SLOTS(exec) \
    {Py_mod_exec, (exec)}, IK_BINDING_MULTIPLE_INTERPRETERS_SLOT IK_BINDING_GIL_SLOT {0, NULL}

#endif /* IK_BINDING_H */
