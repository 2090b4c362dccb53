/* _interpkit.c -- the CPython binding of the namespaces runtime (runtime.c).
 *
 * The host side only: a Runtime type wrapping ik_runtime, moving bytes in
 * and out with the GIL released.  Pickling, error classification and the
 * friendly API live in runtime.py.  Multi-phase init with module state, in
 * the shape of CPython's Modules/xxlimited.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "binding.h"
#include "interpkit.h"

#define MODULE_NAME_STR "interpkit.native._interpkit"

/* Runtime type *************************************************************/

typedef struct {
    PyObject_HEAD
    ik_runtime *runtime;
    int active_calls;           /* host threads inside submit(); GIL-guarded */
    PyObject *native_error;     /* strong reference, for methods */
} RuntimeObject;

static int
check_open(RuntimeObject *self)
{
    if (self->runtime == NULL) {
        PyErr_SetString(PyExc_ValueError, "cannot use runtime (closed)");
        return -1;
    }
    return 0;
}

static PyObject *
Runtime_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"libpython", "executable", "bootstrap", "count",
                             "start_timeout", NULL};
    const char *libpython, *executable, *bootstrap;
    int count;
    double start_timeout = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sssi|d:Runtime", kwlist,
                                     &libpython, &executable, &bootstrap,
                                     &count, &start_timeout)) {
        return NULL;
    }
    PyObject *module = PyType_GetModule(type);
    if (module == NULL) {
        return NULL;
    }
    ik_binding_state *state = ik_binding_state_of(module);
    RuntimeObject *self = (RuntimeObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->native_error = Py_NewRef(state->native_error);
    ik_options opts = {libpython, executable, bootstrap, count, start_timeout};
    ik_error err = {0};
    ik_runtime *runtime;
    Py_BEGIN_ALLOW_THREADS
    runtime = ik_runtime_start(&opts, &err);
    Py_END_ALLOW_THREADS
    if (runtime == NULL) {
        Py_DECREF(self);
        return ik_binding_raise(state->native_error, &err);
    }
    self->runtime = runtime;
    return (PyObject *)self;
}

PyDoc_STRVAR(Runtime_submit_doc,
"submit($self, index, request, /, timeout=0.0)\n--\n\n"
"Send request bytes to interpreter index and return its answer bytes.");

static PyObject *
Runtime_submit(RuntimeObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"", "", "timeout", NULL};
    int index;
    Py_buffer request;
    double timeout = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iy*|d:submit", kwlist,
                                     &index, &request, &timeout)) {
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
    self->active_calls++;
    Py_BEGIN_ALLOW_THREADS
    status = ik_runtime_submit(self->runtime, index, request.buf,
                               (size_t)request.len, timeout, &response,
                               &response_len, &err);
    Py_END_ALLOW_THREADS
    self->active_calls--;
    PyBuffer_Release(&request);
    if (status != IK_OK) {
        return ik_binding_raise(self->native_error, &err);
    }
    PyObject *result = PyBytes_FromStringAndSize(response, (Py_ssize_t)response_len);
    free(response);
    return result;
}

/* stop(index, timeout) or retire(index, timeout): interpreter index ends
 * once, finalized or parked; the others keep running. */
static PyObject *
end_interpreter(RuntimeObject *self, PyObject *args, PyObject *kwargs, int retire)
{
    static char *kwlist[] = {"", "timeout", NULL};
    int index;
    double timeout = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, retire ? "i|d:retire" : "i|d:stop",
                                     kwlist, &index, &timeout)) {
        return NULL;
    }
    if (check_open(self) < 0) {
        return NULL;
    }
    ik_error err = {0};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = retire ? ik_runtime_retire(self->runtime, index, timeout, &err)
                : ik_runtime_stop(self->runtime, index, timeout, &err);
    Py_END_ALLOW_THREADS
    if (rc < -1) {
        return ik_binding_raise(self->native_error, &err);
    }
    if (retire) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(rc);
}

PyDoc_STRVAR(Runtime_stop_doc,
"stop($self, index, /, timeout=0.0)\n--\n\n"
"Finalize interpreter index on its own thread; the others keep running.\n"
"Returns Py_FinalizeEx's result (0 or -1).");

static PyObject *
Runtime_stop(RuntimeObject *self, PyObject *args, PyObject *kwargs)
{
    return end_interpreter(self, args, kwargs, 0);
}

PyDoc_STRVAR(Runtime_retire_doc,
"retire($self, index, /, timeout=0.0)\n--\n\n"
"Stop interpreter index without finalizing it: its thread parks for the life\n"
"of the process, holding no GIL, and its namespace stays loaded.");

static PyObject *
Runtime_retire(RuntimeObject *self, PyObject *args, PyObject *kwargs)
{
    return end_interpreter(self, args, kwargs, 1);
}

PyDoc_STRVAR(Runtime_teardown_doc,
"teardown($self, index, /)\n--\n\n"
"(state, finalize_rc, finalize_seconds) of interpreter index; state is one\n"
"of the TEARDOWN_* constants.");

static PyObject *
Runtime_teardown(RuntimeObject *self, PyObject *arg)
{
    int index;
    if (!PyArg_Parse(arg, "i", &index) || check_open(self) < 0) {
        return NULL;
    }
    ik_teardown record = {0};
    if (ik_runtime_teardown(self->runtime, index, &record) < 0) {
        PyErr_Format(PyExc_IndexError, "no interpreter %d", index);
        return NULL;
    }
    return Py_BuildValue("(iid)", record.state, record.finalize_rc,
                         record.finalize_seconds);
}

PyDoc_STRVAR(Runtime_shutdown_doc,
"shutdown($self, /, timeout=0.0)\n--\n\n"
"Finalize every interpreter still running (in parallel) but keep the runtime,\n"
"so teardown() can still be asked.  Returns the number of worker threads\n"
"that could not be joined (retired ones excluded).");

static PyObject *
Runtime_shutdown(RuntimeObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    double timeout = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|d:shutdown", kwlist, &timeout)) {
        return NULL;
    }
    if (check_open(self) < 0) {
        return NULL;
    }
    if (self->active_calls > 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "cannot shut runtime down (%d requests in flight)",
                     self->active_calls);
        return NULL;
    }
    int leaked;
    Py_BEGIN_ALLOW_THREADS
    leaked = ik_runtime_shutdown(self->runtime, timeout);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(leaked);
}

PyDoc_STRVAR(Runtime_close_doc,
"close($self, /, timeout=0.0)\n--\n\n"
"Finalize every interpreter still running and join its thread.  Returns\n"
"the number of worker threads that could not be joined.");

static PyObject *
Runtime_close(RuntimeObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"timeout", NULL};
    double timeout = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|d:close", kwlist, &timeout)) {
        return NULL;
    }
    if (self->runtime == NULL) {
        return PyLong_FromLong(0);
    }
    if (self->active_calls > 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "cannot close runtime (%d requests in flight)",
                     self->active_calls);
        return NULL;
    }
    ik_runtime *runtime = self->runtime;
    self->runtime = NULL;
    int leaked;
    Py_BEGIN_ALLOW_THREADS
    leaked = ik_runtime_close(runtime, timeout);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(leaked);
}

PyDoc_STRVAR(Runtime_abandon_doc,
"abandon($self, /)\n--\n\n"
"Drop the runtime without stopping it: for a forked child, whose copy has no\n"
"worker threads to stop (closing would wait for them forever).");

static PyObject *
Runtime_abandon(RuntimeObject *self, PyObject *Py_UNUSED(ignored))
{
    self->runtime = NULL;       /* the memory is the parent's, copied; leaked here */
    self->active_calls = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Runtime_linkmap_doc,
"linkmap($self, index, /)\n--\n\n"
"List (path, load_bias) of every object loaded in interpreter index's\n"
"link-map namespace, in load order.");

static PyObject *
Runtime_linkmap(RuntimeObject *self, PyObject *arg)
{
    int index;
    if (!PyArg_Parse(arg, "i", &index) || check_open(self) < 0) {
        return NULL;
    }
    ik_linkmap_entry *entries = NULL;
    ik_error err = {0};
    int count = ik_runtime_linkmap(self->runtime, index, &entries, &err);
    if (count < 0) {
        return ik_binding_raise(self->native_error, &err);
    }
    PyObject *result = PyList_New(count);
    for (int k = 0; result != NULL && k < count; k++) {
        PyObject *item = Py_BuildValue("(sk)", entries[k].path, entries[k].base);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, k, item);
    }
    free(entries);
    return result;
}

PyDoc_STRVAR(Runtime_namespace_doc,
"namespace($self, index, /)\n--\n\n"
"Link-map namespace id (Lmid_t) of interpreter index, or -1 once unloaded.");

static PyObject *
Runtime_namespace(RuntimeObject *self, PyObject *arg)
{
    int index;
    if (!PyArg_Parse(arg, "i", &index) || check_open(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(ik_runtime_namespace(self->runtime, index));
}

PyDoc_STRVAR(Runtime_alive_doc,
"alive($self, index, /)\n--\n\n"
"True while interpreter index can take requests.");

static PyObject *
Runtime_alive(RuntimeObject *self, PyObject *arg)
{
    int index;
    if (!PyArg_Parse(arg, "i", &index)) {
        return NULL;
    }
    if (self->runtime == NULL) {
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong(ik_runtime_alive(self->runtime, index));
}

static PyObject *
Runtime_get_count(RuntimeObject *self, void *closure)
{
    return PyLong_FromLong(self->runtime ? ik_runtime_count(self->runtime) : 0);
}

static int
Runtime_traverse(RuntimeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->native_error);
    return 0;
}

static void
Runtime_dealloc(RuntimeObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->runtime != NULL) {
        /* Never leave worker threads holding their GILs (docs/facts.md fact 7). */
        ik_runtime *runtime = self->runtime;
        self->runtime = NULL;
        Py_BEGIN_ALLOW_THREADS
        ik_runtime_close(runtime, 0);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(self->native_error);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Runtime_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))Runtime_submit,
     METH_VARARGS | METH_KEYWORDS, Runtime_submit_doc},
    {"stop", (PyCFunction)(void (*)(void))Runtime_stop,
     METH_VARARGS | METH_KEYWORDS, Runtime_stop_doc},
    {"close", (PyCFunction)(void (*)(void))Runtime_close,
     METH_VARARGS | METH_KEYWORDS, Runtime_close_doc},
    {"retire", (PyCFunction)(void (*)(void))Runtime_retire,
     METH_VARARGS | METH_KEYWORDS, Runtime_retire_doc},
    {"teardown", (PyCFunction)Runtime_teardown, METH_O, Runtime_teardown_doc},
    {"shutdown", (PyCFunction)(void (*)(void))Runtime_shutdown,
     METH_VARARGS | METH_KEYWORDS, Runtime_shutdown_doc},
    {"abandon", (PyCFunction)Runtime_abandon, METH_NOARGS, Runtime_abandon_doc},
    {"linkmap", (PyCFunction)Runtime_linkmap, METH_O, Runtime_linkmap_doc},
    {"namespace", (PyCFunction)Runtime_namespace, METH_O, Runtime_namespace_doc},
    {"alive", (PyCFunction)Runtime_alive, METH_O, Runtime_alive_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Runtime_getset[] = {
    {"count", (getter)Runtime_get_count, NULL, "number of interpreters", NULL},
    {NULL},
};

PyDoc_STRVAR(Runtime_doc,
"Runtime(libpython, executable, bootstrap, count, start_timeout=0.0)\n--\n\n"
"count interpreters, each dlmopen'd from libpython into its own namespace\n"
"and served by its own thread; bootstrap must define _ik_handle(bytes).");

static PyType_Slot Runtime_slots[] = {
    {Py_tp_doc, (void *)Runtime_doc},
    {Py_tp_new, Runtime_new},
    {Py_tp_dealloc, Runtime_dealloc},
    {Py_tp_traverse, Runtime_traverse},
    {Py_tp_methods, Runtime_methods},
    {Py_tp_getset, Runtime_getset},
    {0, NULL},
};

static PyType_Spec Runtime_spec = {
    .name = MODULE_NAME_STR ".Runtime",
    .basicsize = sizeof(RuntimeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Runtime_slots,
};

/* module level code ********************************************************/

static int
ik_module_exec(PyObject *module)
{
    return ik_binding_exec(module, &Runtime_spec, MODULE_NAME_STR ".NativeError");
}

static PyModuleDef_Slot ik_module_slots[] = {
    IK_BINDING_SLOTS(ik_module_exec),
};

PyDoc_STRVAR(ik_module_doc,
"Namespaces runtime: CPython interpreters in separate glibc link-map\n"
"namespaces of this process, one worker thread each.");

static struct PyModuleDef ik_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = MODULE_NAME_STR,
    .m_doc = ik_module_doc,
    .m_size = sizeof(ik_binding_state),
    .m_slots = ik_module_slots,
    .m_traverse = ik_binding_traverse,
    .m_clear = ik_binding_clear,
    .m_free = ik_binding_free,
};

PyMODINIT_FUNC
PyInit__interpkit(void)
{
    return PyModuleDef_Init(&ik_module_def);
}
