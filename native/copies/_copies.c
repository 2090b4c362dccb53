/* copies.c -- the copies runtime's binding: one interpreter per renamed
 * libpython copy, all in the base link-map namespace (torch::deploy's
 * mechanism).
 *
 * Each Interpreter object dlopens its own copy of libpython (a distinct file
 * with its own DT_SONAME, made by interpkit.native.copies.runtime) with
 * RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND:
 *   - RTLD_LOCAL keeps the copy out of the global scope, so nothing else
 *     binds to it by accident;
 *   - RTLD_DEEPBIND puts the copy's own symbol table before the global scope,
 *     where the host's libpython3.x.so sits.  Without it the copy's internal
 *     PLT/GOT references to exported Py* functions and data would bind to
 *     the host's libpython (libpython is built with semantic interposition).
 * From there on the interpreter is the shared worker core's
 * (native/core/worker.c): one dedicated OS thread from Py_InitializeFromConfig
 * to Py_FinalizeEx, the mailbox, the interrupt, finalize or retire.
 *
 * Unlike dlmopen namespaces there is one libc, one ctype table and one TSS
 * key space, so the base libc creates the thread and no per-thread libc
 * set-up is needed, and no glibc namespace is used: the ceiling is memory and
 * the static TLS the copies' extensions ask for (see native/README.md,
 * "copies").
 *
 * The binding releases the host GIL while it waits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "worker.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

#define MODULE_NAME_STR "interpkit.native._copies"

/* Open the copy and start its thread; IK_OK, or a status with *err. */
static int
cp_start(ik_worker *w, const char *libpython, ik_error *err)
{
    w->handle = dlopen(libpython, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (w->handle == NULL) {
        const char *reason = dlerror();
        ik_set_error(err, IK_ERR_DLMOPEN, w->index, "%s",
                     reason ? reason : "dlopen failed");
        return IK_ERR_DLMOPEN;
    }
    /* site runs later, from the bootstrap, once the copies loader is in place:
     * a .pth file importing an extension must already get this interpreter's
     * copy of it. */
    w->site_import = 0;
    if (ik_worker_load_api(w, "libpython copy", err) < 0) {
        return IK_ERR_SYMBOL;
    }
    return ik_worker_spawn(w, err);
}

/* Free a worker no thread will touch again; leak it otherwise (a lost one's
 * thread may still write to it). */
static void
cp_free(ik_worker *w)
{
    if (ik_worker_may_free(w)) {
        ik_worker_release(w);
        free(w);
    }
}

/* CPython binding **********************************************************/

typedef struct {
    PyObject_HEAD
    ik_worker *worker;          /* NULL once closed (or leaked when lost) */
    PyObject *native_error;
} InterpreterObject;

static PyObject *
Interpreter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"libpython", "executable", "bootstrap", "index", NULL};
    const char *libpython, *executable, *bootstrap;
    int index;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sssi:Interpreter", kwlist,
                                     &libpython, &executable, &bootstrap, &index)) {
        return NULL;
    }
    PyObject *module = PyType_GetModule(type);
    if (module == NULL) {
        return NULL;
    }
    ik_binding_state *state = ik_binding_state_of(module);
    ik_worker *w = malloc(sizeof(*w));
    if (w == NULL) {
        return PyErr_NoMemory();
    }
    if (ik_worker_setup(w, index, executable, bootstrap) < 0) {
        cp_free(w);
        return PyErr_NoMemory();
    }
    ik_error err = {0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = cp_start(w, libpython, &err);
    Py_END_ALLOW_THREADS
    if (status != IK_OK) {
        ik_binding_raise(state->native_error, &err);
        if (w->handle) dlclose(w->handle);
        cp_free(w);
        return NULL;
    }
    InterpreterObject *self = (InterpreterObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        ik_worker_end(w, 0, 0, NULL);
        cp_free(w);
        return NULL;
    }
    self->worker = w;
    self->native_error = Py_NewRef(state->native_error);
    return (PyObject *)self;
}

static int
check_open(InterpreterObject *self)
{
    if (self->worker == NULL) {
        PyErr_SetString(PyExc_ValueError, "cannot use interpreter (closed)");
        return -1;
    }
    return 0;
}

static PyObject *
Interpreter_wait_ready(InterpreterObject *self, PyObject *args)
{
    double timeout = 0.0;
    if (!PyArg_ParseTuple(args, "|d:wait_ready", &timeout) || check_open(self) < 0) {
        return NULL;
    }
    ik_worker *w = self->worker;
    ik_worker_state state;
    Py_BEGIN_ALLOW_THREADS
    state = ik_worker_wait_ready(w, timeout);
    Py_END_ALLOW_THREADS
    if (state == IK_WORKER_FAILED) {
        return ik_binding_raise(self->native_error, &w->start_error);
    }
    if (state != IK_WORKER_READY) {
        ik_error err;
        ik_set_error(&err, IK_ERR_TIMEOUT, w->index, "cannot start interpreter %d "
                     "(not ready after %.1f s)", w->index, timeout);
        return ik_binding_raise(self->native_error, &err);
    }
    Py_RETURN_NONE;
}

static PyObject *
Interpreter_submit(InterpreterObject *self, PyObject *args)
{
    Py_buffer request;
    double timeout = 0.0;
    if (!PyArg_ParseTuple(args, "y*|d:submit", &request, &timeout)) {
        return NULL;
    }
    if (check_open(self) < 0) {
        PyBuffer_Release(&request);
        return NULL;
    }
    char *response = NULL;
    size_t response_len = 0;
    ik_error err = {0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = ik_worker_submit(self->worker, request.buf, (size_t)request.len, timeout,
                              &response, &response_len, &err);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&request);
    if (status != IK_OK) {
        return ik_binding_raise(self->native_error, &err);
    }
    PyObject *result = PyBytes_FromStringAndSize(response, (Py_ssize_t)response_len);
    free(response);
    return result;
}

static PyObject *
Interpreter_alive(InterpreterObject *self, PyObject *unused)
{
    return PyBool_FromLong(self->worker != NULL && ik_worker_alive(self->worker));
}

static PyObject *
Interpreter_native_thread(InterpreterObject *self, PyObject *unused)
{
    return PyLong_FromLong(self->worker ? self->worker->native_thread : -1);
}

/* The worker ends once: finalized (retire=0) or parked (retire=1).  Returns
 * Py_FinalizeEx's result (0 clean, -1), 0 when retired; NativeError when lost
 * or stuck, and then the worker's memory is leaked, never freed under it.
 * The teardown record stays readable afterwards. */
static PyObject *
cp_end(InterpreterObject *self, PyObject *args, int retire)
{
    double timeout = 0.0;
    if (!PyArg_ParseTuple(args, retire ? "|d:retire" : "|d:stop", &timeout)) {
        return NULL;
    }
    ik_worker *w = self->worker;
    if (w == NULL) {
        return PyLong_FromLong(0);
    }
    ik_error err = {0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = ik_worker_end(w, timeout, retire, &err);
    Py_END_ALLOW_THREADS
    if (rc < -1) {
        return ik_binding_raise(self->native_error, &err);
    }
    return PyLong_FromLong(rc);
}

static PyObject *
Interpreter_stop(InterpreterObject *self, PyObject *args)
{
    return cp_end(self, args, 0);
}

static PyObject *
Interpreter_retire(InterpreterObject *self, PyObject *args)
{
    return cp_end(self, args, 1);
}

static PyObject *
Interpreter_teardown(InterpreterObject *self, PyObject *unused)
{
    if (check_open(self) < 0) {
        return NULL;
    }
    ik_teardown record = {0};
    ik_worker_teardown(self->worker, &record);
    return Py_BuildValue("(iid)", record.state, record.finalize_rc,
                         record.finalize_seconds);
}

/* After fork: the worker thread does not exist in the child; forget it. */
static PyObject *
Interpreter_abandon(InterpreterObject *self, PyObject *unused)
{
    self->worker = NULL;
    Py_RETURN_NONE;
}

static void
Interpreter_dealloc(InterpreterObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    ik_worker *w = self->worker;
    if (w != NULL) {
        if (!w->stop_requested) {   /* never stopped: finalize it now */
            Py_BEGIN_ALLOW_THREADS
            ik_worker_end(w, 30.0, 0, NULL);
            Py_END_ALLOW_THREADS
        }
        cp_free(w);
    }
    Py_XDECREF(self->native_error);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Interpreter_methods[] = {
    {"wait_ready", (PyCFunction)Interpreter_wait_ready, METH_VARARGS,
     "wait_ready(timeout=0.0): block until the interpreter is initialized."},
    {"submit", (PyCFunction)Interpreter_submit, METH_VARARGS,
     "submit(request, timeout=0.0) -> bytes: one request, one answer."},
    {"alive", (PyCFunction)Interpreter_alive, METH_NOARGS, "Ready and not stopping."},
    {"native_thread", (PyCFunction)Interpreter_native_thread, METH_NOARGS,
     "The worker's kernel thread id."},
    {"stop", (PyCFunction)Interpreter_stop, METH_VARARGS,
     "stop(timeout=0.0) -> int: finalize on the worker thread and join it."},
    {"retire", (PyCFunction)Interpreter_retire, METH_VARARGS,
     "retire(timeout=0.0): stop without finalizing; the thread parks for good."},
    {"teardown", (PyCFunction)Interpreter_teardown, METH_NOARGS,
     "(state, finalize_rc, finalize_seconds); state is a TEARDOWN_* constant."},
    {"abandon", (PyCFunction)Interpreter_abandon, METH_NOARGS,
     "Forget the worker (after fork)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Interpreter_slots[] = {
    {Py_tp_new, Interpreter_new},
    {Py_tp_dealloc, Interpreter_dealloc},
    {Py_tp_methods, Interpreter_methods},
    {Py_tp_doc, "One interpreter running from its own libpython copy."},
    {0, NULL},
};

static PyType_Spec Interpreter_spec = {
    .name = MODULE_NAME_STR ".Interpreter",
    .basicsize = sizeof(InterpreterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Interpreter_slots,
};

static int
copies_exec(PyObject *module)
{
    return ik_binding_exec(module, &Interpreter_spec, MODULE_NAME_STR ".NativeError");
}

static PyModuleDef_Slot copies_slots[] = {
    IK_BINDING_SLOTS(copies_exec),
};

static struct PyModuleDef copies_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = MODULE_NAME_STR,
    .m_doc = "The copies runtime's binding: Interpreter (one libpython copy, one thread).",
    .m_size = sizeof(ik_binding_state),
    .m_slots = copies_slots,
    .m_traverse = ik_binding_traverse,
    .m_clear = ik_binding_clear,
    .m_free = ik_binding_free,
};

PyMODINIT_FUNC
PyInit__copies(void)
{
    return PyModuleDef_Init(&copies_module);
}
