/* copies.c -- the copies runtime: one interpreter per renamed libpython copy,
 * all in the base link-map namespace (torch::deploy's mechanism).
 *
 * Each Interpreter object dlopens its own copy of libpython (a distinct file
 * with its own DT_SONAME, made by interpkit.native.copies) with
 * RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND:
 *   - RTLD_LOCAL keeps the copy out of the global scope, so nothing else
 *     binds to it by accident;
 *   - RTLD_DEEPBIND puts the copy's own symbol table before the global scope,
 *     where the host's libpython3.x.so sits.  Without it the copy's internal
 *     PLT/GOT references to exported Py* functions and data would bind to
 *     the host's libpython (libpython is built with semantic interposition).
 * The interpreter then lives on one dedicated OS thread from
 * Py_InitializeFromConfig to Py_FinalizeEx.  Every Py* call below goes
 * through a pointer looked up with dlsym on the copy's handle; the host's
 * Python.h gives only types and layouts (the copy is the same libpython).
 *
 * Unlike dlmopen namespaces there is one libc, one ctype table and one TSS
 * key space, so no per-thread libc set-up is needed, and no glibc namespace
 * is used: the ceiling is memory and the static TLS the copies' extensions
 * ask for (see native/README.md, "copies").
 *
 * The binding (the _copies module) releases the host GIL while it waits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stddef.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MODULE_NAME_STR "interpkit.native._copies"

/* Status codes, the same numbers as the namespaces runtime's ik_status. */
enum {
    CP_OK = 0, CP_ERR_DLOPEN = -1, CP_ERR_SYMBOL = -2, CP_ERR_INIT = -3,
    CP_ERR_BOOTSTRAP = -4, CP_ERR_THREAD = -5, CP_ERR_TIMEOUT = -6,
    CP_ERR_CLOSED = -7, CP_ERR_REMOTE = -8, CP_ERR_MEMORY = -9,
};

/* Seconds a timed-out request gets to honour the interrupt before its
 * interpreter is declared lost. */
#define CP_INTERRUPT_GRACE 2.0

typedef struct cp_api {
    void (*PyConfig_InitPythonConfig)(PyConfig *);
    PyStatus (*PyConfig_SetBytesString)(PyConfig *, wchar_t **, const char *);
    PyStatus (*Py_InitializeFromConfig)(const PyConfig *);
    int (*PyStatus_Exception)(PyStatus);
    void (*PyConfig_Clear)(PyConfig *);
    PyObject *(*PyImport_AddModule)(const char *);
    PyObject *(*PyModule_GetDict)(PyObject *);
    PyObject *(*PyRun_StringFlags)(const char *, int, PyObject *, PyObject *,
                                   PyCompilerFlags *);
    PyObject *(*PyDict_GetItemString)(PyObject *, const char *);
    int (*PyDict_SetItemString)(PyObject *, const char *, PyObject *);
    PyObject *(*PyLong_FromLong)(long);
    PyObject *(*PyBytes_FromStringAndSize)(const char *, Py_ssize_t);
    int (*PyBytes_AsStringAndSize)(PyObject *, char **, Py_ssize_t *);
    PyObject *(*PyObject_CallFunctionObjArgs)(PyObject *, ...);
    PyObject *(*PyObject_Str)(PyObject *);
    const char *(*PyUnicode_AsUTF8)(PyObject *);
    void (*PyErr_Fetch)(PyObject **, PyObject **, PyObject **);
    void (*PyErr_Clear)(void);
    PyObject **PyExc_TimeoutError;
    void (*Py_IncRef)(PyObject *);
    void (*Py_DecRef)(PyObject *);
    PyThreadState *(*PyEval_SaveThread)(void);
    void (*PyEval_RestoreThread)(PyThreadState *);
    PyInterpreterState *(*PyInterpreterState_Get)(void);
    int (*_PyEval_AddPendingCall)(PyInterpreterState *, int (*)(void *), void *);
    void (*_PyEval_SignalAsyncExc)(PyInterpreterState *);
    int (*PyThreadState_SetAsyncExc)(unsigned long, PyObject *);
    int (*Py_FinalizeEx)(void);
} cp_api;

#define CP_SYM(field) {#field, offsetof(cp_api, field)}
static const struct { const char *name; size_t offset; } cp_symbols[] = {
    CP_SYM(PyConfig_InitPythonConfig), CP_SYM(PyConfig_SetBytesString),
    CP_SYM(Py_InitializeFromConfig), CP_SYM(PyStatus_Exception),
    CP_SYM(PyConfig_Clear), CP_SYM(PyImport_AddModule), CP_SYM(PyModule_GetDict),
    CP_SYM(PyRun_StringFlags), CP_SYM(PyDict_GetItemString),
    CP_SYM(PyDict_SetItemString), CP_SYM(PyLong_FromLong),
    CP_SYM(PyBytes_FromStringAndSize), CP_SYM(PyBytes_AsStringAndSize),
    CP_SYM(PyObject_CallFunctionObjArgs), CP_SYM(PyObject_Str),
    CP_SYM(PyUnicode_AsUTF8), CP_SYM(PyErr_Fetch), CP_SYM(PyErr_Clear),
    CP_SYM(PyExc_TimeoutError), CP_SYM(Py_IncRef), CP_SYM(Py_DecRef),
    CP_SYM(PyEval_SaveThread), CP_SYM(PyEval_RestoreThread),
    CP_SYM(PyInterpreterState_Get), CP_SYM(_PyEval_AddPendingCall),
    CP_SYM(_PyEval_SignalAsyncExc), CP_SYM(PyThreadState_SetAsyncExc),
    CP_SYM(Py_FinalizeEx),
};
#undef CP_SYM

typedef enum { CP_NEW, CP_READY, CP_FAILED, CP_STOPPED, CP_LOST } cp_state;

/* One interpreter: its libpython copy, its thread and its mailbox.  Shared
 * between the host and the worker thread; freed only once the thread has
 * been joined (a lost worker's is leaked on purpose). */
typedef struct cp_worker {
    int index;
    char *libpython, *executable, *bootstrap;
    void *handle;
    cp_api api;
    pthread_t thread;
    int thread_started, thread_joined;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cp_state state;
    int stop_requested, in_use, abandoned;
    char *request;
    size_t request_len;
    unsigned long serial, interrupt_serial;
    int has_response, response_status;
    char *response;
    size_t response_len;
    char response_error[1024];
    char start_error[2048];
    int start_status, finalize_rc;
    long native_thread;
    unsigned long thread_ident;
    PyInterpreterState *interp;
    PyThreadState *tstate;
    PyObject *handler;
} cp_worker;

static struct timespec
cp_deadline(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long whole = (long)seconds;
    ts.tv_sec += whole;
    ts.tv_nsec += (long)((seconds - (double)whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int
cp_wait(cp_worker *w, const struct timespec *deadline)
{
    return deadline ? pthread_cond_timedwait(&w->cond, &w->lock, deadline)
                    : pthread_cond_wait(&w->cond, &w->lock);
}

/* worker thread ************************************************************/

static void
cp_describe_exception(cp_worker *w, char *buf, size_t len)
{
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    w->api.PyErr_Fetch(&type, &value, &traceback);
    const char *type_name = type ? ((PyTypeObject *)type)->tp_name : "error";
    PyObject *text = value ? w->api.PyObject_Str(value) : NULL;
    const char *message = text ? w->api.PyUnicode_AsUTF8(text) : NULL;
    snprintf(buf, len, "%s: %s", type_name, message ? message : "");
    if (message == NULL) {
        w->api.PyErr_Clear();
    }
    if (text) w->api.Py_DecRef(text);
    if (type) w->api.Py_DecRef(type);
    if (value) w->api.Py_DecRef(value);
    if (traceback) w->api.Py_DecRef(traceback);
}

/* Pending call scheduled by a host whose request timed out (GIL held, on the
 * worker thread): raise TimeoutError into the running code. */
static int
cp_interrupt(void *arg)
{
    cp_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    int current = w->interrupt_serial == w->serial && !w->has_response;
    pthread_mutex_unlock(&w->lock);
    if (current) {
        w->api.PyThreadState_SetAsyncExc(w->thread_ident, *w->api.PyExc_TimeoutError);
    }
    return 0;
}

static int
cp_initialize(cp_worker *w)
{
    cp_api *api = &w->api;
    PyConfig config;
    api->PyConfig_InitPythonConfig(&config);
    /* The host owns signals, C stdio modes and argv. */
    config.install_signal_handlers = 0;
    config.configure_c_stdio = 0;
    config.parse_argv = 0;
    /* site runs later, from the bootstrap, once the copies loader is in place:
     * a .pth file importing an extension must already get this interpreter's
     * copy of it. */
    config.site_import = 0;
    /* An absolute program name keeps path configuration on this Python's
     * prefix (not whatever "python3" $PATH finds). */
    PyStatus status = api->PyConfig_SetBytesString(&config, &config.program_name,
                                                   w->executable);
    if (!api->PyStatus_Exception(status)) {
        status = api->Py_InitializeFromConfig(&config);
    }
    api->PyConfig_Clear(&config);
    if (api->PyStatus_Exception(status)) {
        w->start_status = CP_ERR_INIT;
        snprintf(w->start_error, sizeof(w->start_error),
                 "cannot initialize interpreter %d (%s: %s)", w->index,
                 status.func ? status.func : "Py_InitializeFromConfig",
                 status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    w->interp = api->PyInterpreterState_Get();
    w->thread_ident = (unsigned long)pthread_self();
    PyObject *main_module = api->PyImport_AddModule("__main__");
    PyObject *globals = main_module ? api->PyModule_GetDict(main_module) : NULL;
    PyObject *index = api->PyLong_FromLong(w->index);
    if (globals == NULL || index == NULL
        || api->PyDict_SetItemString(globals, "_ik_index", index) < 0) {
        if (index) api->Py_DecRef(index);
        goto error;
    }
    api->Py_DecRef(index);
    PyObject *result = api->PyRun_StringFlags(w->bootstrap, Py_file_input,
                                              globals, globals, NULL);
    if (result == NULL) {
        goto error;
    }
    api->Py_DecRef(result);
    w->handler = api->PyDict_GetItemString(globals, "_ik_handle");
    if (w->handler == NULL) {
        w->start_status = CP_ERR_BOOTSTRAP;
        snprintf(w->start_error, sizeof(w->start_error),
                 "cannot start interpreter %d (bootstrap did not define _ik_handle)",
                 w->index);
        return -1;
    }
    api->Py_IncRef(w->handler);
    return 0;

error:;
    char text[1024];
    cp_describe_exception(w, text, sizeof(text));
    w->start_status = CP_ERR_BOOTSTRAP;
    snprintf(w->start_error, sizeof(w->start_error),
             "cannot start interpreter %d (bootstrap raised %s)", w->index, text);
    return -1;
}

static void
cp_serve(cp_worker *w, const char *request, size_t request_len, int *status,
         char **response, size_t *response_len, char *error, size_t error_len)
{
    cp_api *api = &w->api;
    *status = CP_OK;
    *response = NULL;
    *response_len = 0;
    PyObject *argument = api->PyBytes_FromStringAndSize(request, (Py_ssize_t)request_len);
    PyObject *result = argument
        ? api->PyObject_CallFunctionObjArgs(w->handler, argument, NULL) : NULL;
    char *data;
    Py_ssize_t size;
    if (result == NULL || api->PyBytes_AsStringAndSize(result, &data, &size) < 0) {
        cp_describe_exception(w, error, error_len);
        *status = CP_ERR_REMOTE;
    }
    else if ((*response = malloc(size ? (size_t)size : 1)) == NULL) {
        snprintf(error, error_len, "MemoryError: cannot copy a %zd-byte answer", size);
        *status = CP_ERR_MEMORY;
    }
    else {
        memcpy(*response, data, (size_t)size);
        *response_len = (size_t)size;
    }
    if (argument) api->Py_DecRef(argument);
    if (result) api->Py_DecRef(result);
}

static void *
cp_worker_main(void *arg)
{
    cp_worker *w = arg;
    w->native_thread = (long)syscall(SYS_gettid);
    int failed = cp_initialize(w) < 0;
    if (failed && w->interp != NULL) {
        w->api.Py_FinalizeEx();     /* on the interpreter's own thread */
    }
    pthread_mutex_lock(&w->lock);
    w->state = failed ? CP_FAILED : CP_READY;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (failed) {
        return NULL;
    }
    /* Idle without the GIL so threads the interpreter started can run. */
    w->tstate = w->api.PyEval_SaveThread();
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->request == NULL && !w->stop_requested) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->request == NULL) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        char *request = w->request;
        size_t request_len = w->request_len;
        pthread_mutex_unlock(&w->lock);

        int status;
        char *response;
        size_t response_len;
        char error[sizeof(w->response_error)];
        w->api.PyEval_RestoreThread(w->tstate);
        cp_serve(w, request, request_len, &status, &response, &response_len,
                 error, sizeof(error));
        w->tstate = w->api.PyEval_SaveThread();
        free(request);

        pthread_mutex_lock(&w->lock);
        w->request = NULL;
        if (w->abandoned) {
            free(response);
            w->abandoned = 0;
        }
        else {
            w->response_status = status;
            w->response = response;
            w->response_len = response_len;
            memcpy(w->response_error, error, sizeof(error));
            w->has_response = 1;
        }
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    /* Finalize on the thread that owns the interpreter, and never end this
     * thread holding a GIL (static destructors would wait for it). */
    w->api.PyEval_RestoreThread(w->tstate);
    w->api.Py_DecRef(w->handler);
    w->handler = NULL;
    int rc = w->api.Py_FinalizeEx();
    pthread_mutex_lock(&w->lock);
    w->finalize_rc = rc;
    w->state = CP_STOPPED;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* host side (no host GIL held) *********************************************/

static void
cp_worker_free(cp_worker *w)
{
    free(w->libpython);
    free(w->executable);
    free(w->bootstrap);
    free(w->response);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* Open the copy and start its thread; 0, or a status with w->start_error. */
static int
cp_start(cp_worker *w)
{
    w->handle = dlopen(w->libpython, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (w->handle == NULL) {
        const char *reason = dlerror();
        snprintf(w->start_error, sizeof(w->start_error), "%s",
                 reason ? reason : "dlopen failed");
        return CP_ERR_DLOPEN;
    }
    for (size_t k = 0; k < sizeof(cp_symbols) / sizeof(cp_symbols[0]); k++) {
        void *address = dlsym(w->handle, cp_symbols[k].name);
        if (address == NULL) {
            snprintf(w->start_error, sizeof(w->start_error),
                     "cannot start interpreter %d (symbol %s not found in its "
                     "libpython copy)", w->index, cp_symbols[k].name);
            return CP_ERR_SYMBOL;
        }
        memcpy((char *)&w->api + cp_symbols[k].offset, &address, sizeof(void *));
    }
    int rc = pthread_create(&w->thread, NULL, cp_worker_main, w);
    if (rc != 0) {
        snprintf(w->start_error, sizeof(w->start_error),
                 "cannot start interpreter %d (pthread_create: %s)", w->index,
                 strerror(rc));
        return CP_ERR_THREAD;
    }
    w->thread_started = 1;
    return CP_OK;
}

/* Wait until initialization finished; the state it reached. */
static cp_state
cp_wait_ready(cp_worker *w, double timeout)
{
    struct timespec deadline = cp_deadline(timeout);
    pthread_mutex_lock(&w->lock);
    while (w->state == CP_NEW) {
        if (cp_wait(w, timeout > 0 ? &deadline : NULL) == ETIMEDOUT) {
            break;
        }
    }
    cp_state state = w->state;
    pthread_mutex_unlock(&w->lock);
    return state;
}

/* Ask the worker to finalize and join it; 0, or -1 when it did not finish
 * before the timeout (its thread stays, and so does w). */
static int
cp_stop(cp_worker *w, double timeout)
{
    struct timespec deadline = cp_deadline(timeout);
    const struct timespec *limit = timeout > 0 ? &deadline : NULL;
    pthread_mutex_lock(&w->lock);
    while (w->in_use && w->state == CP_READY) {
        if (cp_wait(w, limit) == ETIMEDOUT) {
            break;
        }
    }
    w->stop_requested = 1;
    pthread_cond_broadcast(&w->cond);
    int finished = 1;
    while (w->thread_started && (w->state == CP_NEW || w->state == CP_READY
                                 || w->state == CP_LOST)) {
        if (w->state == CP_LOST || cp_wait(w, limit) == ETIMEDOUT) {
            finished = 0;
            break;
        }
    }
    int clean = w->state == CP_FAILED || (w->state == CP_STOPPED && w->finalize_rc == 0);
    pthread_mutex_unlock(&w->lock);
    if (!finished) {
        return -1;
    }
    if (w->thread_started && !w->thread_joined) {
        pthread_join(w->thread, NULL);
        w->thread_joined = 1;
    }
    if (clean && w->handle != NULL) {
        dlclose(w->handle);
        w->handle = NULL;
    }
    return 0;
}

static int
cp_submit(cp_worker *w, const char *request, size_t request_len, double timeout,
          char **response, size_t *response_len, char *error, size_t error_len)
{
    char *copy = malloc(request_len ? request_len : 1);
    if (copy == NULL) {
        snprintf(error, error_len, "cannot copy the request (out of memory)");
        return CP_ERR_MEMORY;
    }
    memcpy(copy, request, request_len);
    struct timespec deadline = cp_deadline(timeout);
    const struct timespec *limit = timeout > 0 ? &deadline : NULL;
    int status = CP_OK;
    pthread_mutex_lock(&w->lock);
    while (w->in_use && w->state == CP_READY && !w->stop_requested) {
        if (cp_wait(w, limit) == ETIMEDOUT) {
            snprintf(error, error_len, "interpreter %d stayed busy for %.1f s",
                     w->index, timeout);
            status = CP_ERR_TIMEOUT;
            goto done;
        }
    }
    if (w->state != CP_READY || w->stop_requested) {
        snprintf(error, error_len, "interpreter %d is %s", w->index,
                 w->state == CP_LOST ? "lost (an earlier request never came back)"
                                     : "closed");
        status = CP_ERR_CLOSED;
        goto done;
    }
    w->in_use = 1;
    w->serial++;
    w->request = copy;
    w->request_len = request_len;
    copy = NULL;
    pthread_cond_broadcast(&w->cond);
    while (!w->has_response) {
        if (cp_wait(w, limit) == ETIMEDOUT) {
            break;
        }
    }
    if (!w->has_response) {
        /* As in runtime.c: a pending call plus the async-exception signal
         * (which sets the eval breaker from any thread). */
        w->interrupt_serial = w->serial;
        w->api._PyEval_AddPendingCall(w->interp, cp_interrupt, w);
        w->api._PyEval_SignalAsyncExc(w->interp);
        struct timespec grace = cp_deadline(CP_INTERRUPT_GRACE);
        while (!w->has_response) {
            if (cp_wait(w, &grace) == ETIMEDOUT) {
                break;
            }
        }
        if (w->has_response) {
            free(w->response);
            w->response = NULL;
            w->has_response = 0;
            snprintf(error, error_len, "interpreter %d did not answer within %.1f s "
                     "(request interrupted)", w->index, timeout);
        }
        else {
            w->abandoned = 1;
            w->state = CP_LOST;
            snprintf(error, error_len, "interpreter %d did not answer within %.1f s "
                     "and ignored the interrupt (interpreter marked lost)",
                     w->index, timeout);
        }
        status = CP_ERR_TIMEOUT;
    }
    else {
        status = w->response_status;
        if (status == CP_OK) {
            *response = w->response;
            *response_len = w->response_len;
        }
        else {
            snprintf(error, error_len, "%s", w->response_error);
        }
        w->response = NULL;
        w->has_response = 0;
    }
    w->in_use = 0;
    pthread_cond_broadcast(&w->cond);
done:
    pthread_mutex_unlock(&w->lock);
    free(copy);
    return status;
}

/* CPython binding **********************************************************/

typedef struct {
    PyTypeObject *interpreter_type;
    PyObject *native_error;
} cp_module_state;

typedef struct {
    PyObject_HEAD
    cp_worker *worker;          /* NULL once closed (or leaked when lost) */
    PyObject *native_error;
} InterpreterObject;

static PyObject *
cp_raise(PyObject *native_error, int status, int index, const char *message)
{
    PyObject *args = Py_BuildValue("(iis)", status, index, message);
    if (args != NULL) {
        PyErr_SetObject(native_error, args);
        Py_DECREF(args);
    }
    return NULL;
}

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
    cp_module_state *state = PyModule_GetState(module);
    cp_worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return PyErr_NoMemory();
    }
    w->index = index;
    w->state = CP_NEW;
    w->finalize_rc = -1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->lock, NULL);
    w->libpython = strdup(libpython);
    w->executable = strdup(executable);
    w->bootstrap = strdup(bootstrap);
    if (!w->libpython || !w->executable || !w->bootstrap) {
        cp_worker_free(w);
        return PyErr_NoMemory();
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = cp_start(w);
    Py_END_ALLOW_THREADS
    if (status != CP_OK) {
        PyObject *error = cp_raise(state->native_error, status, index, w->start_error);
        if (w->handle) dlclose(w->handle);
        cp_worker_free(w);
        return error;
    }
    InterpreterObject *self = (InterpreterObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        cp_stop(w, 0);
        cp_worker_free(w);
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
    cp_worker *w = self->worker;
    cp_state state;
    Py_BEGIN_ALLOW_THREADS
    state = cp_wait_ready(w, timeout);
    Py_END_ALLOW_THREADS
    if (state == CP_FAILED) {
        return cp_raise(self->native_error, w->start_status, w->index, w->start_error);
    }
    if (state != CP_READY) {
        char message[256];
        snprintf(message, sizeof(message), "cannot start interpreter %d (not ready "
                 "after %.1f s)", w->index, timeout);
        return cp_raise(self->native_error, CP_ERR_TIMEOUT, w->index, message);
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
    cp_worker *w = self->worker;
    char *response = NULL;
    size_t response_len = 0;
    char error[1024] = "";
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = cp_submit(w, request.buf, (size_t)request.len, timeout, &response,
                       &response_len, error, sizeof(error));
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&request);
    if (status != CP_OK) {
        return cp_raise(self->native_error, status, w->index, error);
    }
    PyObject *result = PyBytes_FromStringAndSize(response, (Py_ssize_t)response_len);
    free(response);
    return result;
}

static PyObject *
Interpreter_alive(InterpreterObject *self, PyObject *unused)
{
    cp_worker *w = self->worker;
    if (w == NULL) {
        Py_RETURN_FALSE;
    }
    pthread_mutex_lock(&w->lock);
    int alive = w->state == CP_READY && !w->stop_requested;
    pthread_mutex_unlock(&w->lock);
    return PyBool_FromLong(alive);
}

static PyObject *
Interpreter_native_thread(InterpreterObject *self, PyObject *unused)
{
    return PyLong_FromLong(self->worker ? self->worker->native_thread : -1);
}

/* stop(timeout) -> finalize status (0 clean); NativeError(CLOSED) when lost
 * or stuck: then the worker's memory is leaked, never freed under it. */
static PyObject *
Interpreter_stop(InterpreterObject *self, PyObject *args)
{
    double timeout = 0.0;
    if (!PyArg_ParseTuple(args, "|d:stop", &timeout)) {
        return NULL;
    }
    cp_worker *w = self->worker;
    if (w == NULL) {
        return PyLong_FromLong(0);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cp_stop(w, timeout);
    Py_END_ALLOW_THREADS
    self->worker = NULL;
    if (rc < 0) {
        char message[256];
        snprintf(message, sizeof(message), "cannot stop interpreter %d (a request "
                 "never came back; its thread is left running)", w->index);
        return cp_raise(self->native_error, CP_ERR_CLOSED, w->index, message);
    }
    int finalize_rc = w->state == CP_STOPPED ? w->finalize_rc : 0;
    cp_worker_free(w);
    return PyLong_FromLong(finalize_rc);
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
    if (self->worker != NULL) {
        cp_worker *w = self->worker;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = cp_stop(w, 30.0);
        Py_END_ALLOW_THREADS
        if (rc == 0) {
            cp_worker_free(w);
        }
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
    cp_module_state *state = PyModule_GetState(module);
    state->interpreter_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Interpreter_spec, NULL);
    if (state->interpreter_type == NULL
        || PyModule_AddType(module, state->interpreter_type) < 0) {
        return -1;
    }
    state->native_error = PyErr_NewException(MODULE_NAME_STR ".NativeError", NULL, NULL);
    if (state->native_error == NULL
        || PyModule_AddObjectRef(module, "NativeError", state->native_error) < 0) {
        return -1;
    }
    static const struct { const char *name; int value; } constants[] = {
        {"ERR_DLOPEN", CP_ERR_DLOPEN}, {"ERR_SYMBOL", CP_ERR_SYMBOL},
        {"ERR_INIT", CP_ERR_INIT}, {"ERR_BOOTSTRAP", CP_ERR_BOOTSTRAP},
        {"ERR_THREAD", CP_ERR_THREAD}, {"ERR_TIMEOUT", CP_ERR_TIMEOUT},
        {"ERR_CLOSED", CP_ERR_CLOSED}, {"ERR_REMOTE", CP_ERR_REMOTE},
        {"ERR_MEMORY", CP_ERR_MEMORY},
    };
    for (size_t k = 0; k < sizeof(constants) / sizeof(constants[0]); k++) {
        if (PyModule_AddIntConstant(module, constants[k].name, constants[k].value) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
copies_traverse(PyObject *module, visitproc visit, void *arg)
{
    cp_module_state *state = PyModule_GetState(module);
    Py_VISIT(state->interpreter_type);
    Py_VISIT(state->native_error);
    return 0;
}

static int
copies_clear(PyObject *module)
{
    cp_module_state *state = PyModule_GetState(module);
    Py_CLEAR(state->interpreter_type);
    Py_CLEAR(state->native_error);
    return 0;
}

static void
copies_free(void *module)
{
    copies_clear((PyObject *)module);
}

static PyModuleDef_Slot copies_slots[] = {
    {Py_mod_exec, copies_exec},
    {0, NULL},
};

static struct PyModuleDef copies_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = MODULE_NAME_STR,
    .m_doc = "The copies runtime's binding: Interpreter (one libpython copy, one thread).",
    .m_size = sizeof(cp_module_state),
    .m_slots = copies_slots,
    .m_traverse = copies_traverse,
    .m_clear = copies_clear,
    .m_free = copies_free,
};

PyMODINIT_FUNC
PyInit__copies(void)
{
    return PyModuleDef_Init(&copies_module);
}
