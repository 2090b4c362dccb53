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

ik_binding_state *
ik_binding_state_of(PyObject *module)
{
    void *state = PyModule_GetState(module);
    assert(state != NULL);
    return (ik_binding_state *)state;
}

int
ik_binding_exec(PyObject *module, PyType_Spec *spec, const char *error_name)
{
    ik_binding_state *state = ik_binding_state_of(module);
    state->type = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (state->type == NULL || PyModule_AddType(module, state->type) < 0) {
        return -1;
    }
    state->native_error = ik_binding_add_error(module, error_name);
    if (state->native_error == NULL || ik_binding_add_constants(module) < 0) {
        return -1;
    }
    return 0;
}

int
ik_binding_traverse(PyObject *module, visitproc visit, void *arg)
{
    ik_binding_state *state = ik_binding_state_of(module);
    Py_VISIT(state->type);
    Py_VISIT(state->native_error);
    return 0;
}

int
ik_binding_clear(PyObject *module)
{
    ik_binding_state *state = ik_binding_state_of(module);
    Py_CLEAR(state->type);
    Py_CLEAR(state->native_error);
    return 0;
}

void
ik_binding_free(void *module)
{
    (void)ik_binding_clear((PyObject *)module);
}
