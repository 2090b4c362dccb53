/* binding.c -- see binding.h. */
#include "binding.h"

PyObject *
ik_binding_add_error(PyObject *module, const char *qualified_name)
{
    PyObject *error = PyErr_NewExceptionWithDoc(
        qualified_name,
        "NativeError(status, index, message): a failure reported by the C runtime.",
        NULL, NULL);
    if (error == NULL || PyModule_AddObjectRef(module, "NativeError", error) < 0) {
        Py_XDECREF(error);
        return NULL;
    }
    return error;
}

int
ik_binding_add_constants(PyObject *module)
{
    static const struct { const char *name; int value; } constants[] = {
        {"ERR_DLMOPEN", IK_ERR_DLMOPEN}, {"ERR_SYMBOL", IK_ERR_SYMBOL},
        {"ERR_INIT", IK_ERR_INIT}, {"ERR_BOOTSTRAP", IK_ERR_BOOTSTRAP},
        {"ERR_THREAD", IK_ERR_THREAD}, {"ERR_TIMEOUT", IK_ERR_TIMEOUT},
        {"ERR_CLOSED", IK_ERR_CLOSED}, {"ERR_REMOTE", IK_ERR_REMOTE},
        {"ERR_MEMORY", IK_ERR_MEMORY}, {"ERR_ARGUMENT", IK_ERR_ARGUMENT},
        {"TEARDOWN_RUNNING", IK_TEARDOWN_RUNNING},
        {"TEARDOWN_FINALIZED", IK_TEARDOWN_FINALIZED},
        {"TEARDOWN_RETIRED", IK_TEARDOWN_RETIRED},
        {"TEARDOWN_LOST", IK_TEARDOWN_LOST},
        {"TEARDOWN_FINALIZING", IK_TEARDOWN_FINALIZING},
        {"TEARDOWN_FAILED", IK_TEARDOWN_FAILED},
    };
    for (size_t k = 0; k < sizeof(constants) / sizeof(constants[0]); k++) {
        if (PyModule_AddIntConstant(module, constants[k].name, constants[k].value) < 0) {
            return -1;
        }
    }
    return 0;
}

PyObject *
ik_binding_raise(PyObject *native_error, const ik_error *err)
{
    PyObject *args = Py_BuildValue("(iis)", err->status, err->index, err->message);
    if (args != NULL) {
        PyErr_SetObject(native_error, args);
        Py_DECREF(args);
    }
    return NULL;
}
