/* A single-phase extension whose state is a C static: shared between interpreters
   that CPython serves from one loaded image, private to each copy of the file. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long calls = 0;

static PyObject *
incr(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(++calls);
}

static PyMethodDef counter_methods[] = {
    {"incr", incr, METH_NOARGS, "incr()\n--\n\nAdd one to the static counter and return it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef counter_module = {
    PyModuleDef_HEAD_INIT, "counter", NULL, -1, counter_methods,
};

PyMODINIT_FUNC
PyInit_counter(void)
{
    return PyModule_Create(&counter_module);
}
