/* runtime.c -- N CPython interpreters in one process, one link-map namespace
 * and one OS thread each.  See include/interpkit.h for the contract and
 * docs/facts.md for the measured facts cited below.
 *
 * Nothing in this file calls the host's Python C API: every Py* call goes
 * through a function pointer looked up with dlsym on the namespace's own
 * libpython handle (the host's Python.h is used only for types and struct
 * layouts, which match because the namespace loads the same libpython).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "interpkit.h"

/* namespace API table ******************************************************/

/* Functions (and one data symbol) used inside a namespace, resolved with
 * dlsym on that namespace's handle.  ik_ctype_init belongs to the
 * namespace's own libc (docs/facts.md fact 2). */
typedef struct ik_api {
    void (*ik_ctype_init)(void);
    /* The namespace libc's own thread functions: the worker thread is created
     * and joined by the libc whose malloc and pthread keys its interpreter
     * uses (see ik_runtime_start and native/README.md, "Teardown"). */
    int (*ns_pthread_create)(pthread_t *, const pthread_attr_t *,
                             void *(*)(void *), void *);
    int (*ns_pthread_join)(pthread_t, void **);
    void (*ns_cxa_finalize)(void *);
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
    void (*PyErr_SetString)(PyObject *, const char *);
    PyObject **PyExc_TimeoutError;
    void (*Py_IncRef)(PyObject *);
    void (*Py_DecRef)(PyObject *);
    PyThreadState *(*PyEval_SaveThread)(void);
    void (*PyEval_RestoreThread)(PyThreadState *);
    PyInterpreterState *(*PyInterpreterState_Get)(void);
#if PY_VERSION_HEX < 0x030C0000
    int (*_PyEval_AddPendingCall)(PyInterpreterState *, int (*)(void *), void *);
    void (*_PyEval_SignalAsyncExc)(PyInterpreterState *);
#else
    /* 3.12+ (built per Python, native/runtime_build.py): the private call takes more
     * arguments; the public one reaches the main interpreter's main thread, which in a
     * namespace of its own is this worker's. */
    int (*Py_AddPendingCall)(int (*)(void *), void *);
#if PY_VERSION_HEX < 0x030D0000
    void (*_PyEval_SignalAsyncExc)(PyInterpreterState *);
#endif
#endif
    int (*PyThreadState_SetAsyncExc)(unsigned long, PyObject *);
    int (*Py_FinalizeEx)(void);
} ik_api;

typedef struct ik_symbol {
    const char *name;
    size_t offset;
} ik_symbol;

#define IK_SYM(field) {#field, offsetof(ik_api, field)}
static const ik_symbol ik_symbols[] = {
    {"__ctype_init", offsetof(ik_api, ik_ctype_init)},
    {"pthread_create", offsetof(ik_api, ns_pthread_create)},
    {"pthread_join", offsetof(ik_api, ns_pthread_join)},
    {"__cxa_finalize", offsetof(ik_api, ns_cxa_finalize)},
    IK_SYM(PyConfig_InitPythonConfig),
    IK_SYM(PyConfig_SetBytesString),
    IK_SYM(Py_InitializeFromConfig),
    IK_SYM(PyStatus_Exception),
    IK_SYM(PyConfig_Clear),
    IK_SYM(PyImport_AddModule),
    IK_SYM(PyModule_GetDict),
    IK_SYM(PyRun_StringFlags),
    IK_SYM(PyDict_GetItemString),
    IK_SYM(PyDict_SetItemString),
    IK_SYM(PyLong_FromLong),
    IK_SYM(PyBytes_FromStringAndSize),
    IK_SYM(PyBytes_AsStringAndSize),
    IK_SYM(PyObject_CallFunctionObjArgs),
    IK_SYM(PyObject_Str),
    IK_SYM(PyUnicode_AsUTF8),
    IK_SYM(PyErr_Fetch),
    IK_SYM(PyErr_Clear),
    IK_SYM(PyErr_SetString),
    IK_SYM(PyExc_TimeoutError),
    IK_SYM(Py_IncRef),
    IK_SYM(Py_DecRef),
    IK_SYM(PyEval_SaveThread),
    IK_SYM(PyEval_RestoreThread),
    IK_SYM(PyInterpreterState_Get),
#if PY_VERSION_HEX < 0x030C0000
    IK_SYM(_PyEval_AddPendingCall),
    IK_SYM(_PyEval_SignalAsyncExc),
#else
    IK_SYM(Py_AddPendingCall),
#if PY_VERSION_HEX < 0x030D0000
    IK_SYM(_PyEval_SignalAsyncExc),
#endif
#endif
    IK_SYM(PyThreadState_SetAsyncExc),
    IK_SYM(Py_FinalizeEx),
};
#undef IK_SYM

/* The base namespace's __ctype_init (GLIBC_PRIVATE, like the namespace's). */
static void (*ik_base_ctype_init)(void);

static void *
ik_noop_thread(void *arg)
{
    return arg;
}

/* The workers are created by the namespaces' libcs, so the base libc may never
 * have seen a second thread: its __libc_single_threaded stays true and its
 * mutexes take the single-thread shortcut (a plain store instead of an atomic
 * and no futex wake): host and worker deadlock in the mailbox (measured:
 * both threads in futex_wait on the worker's lock).  One thread created and
 * joined by the base libc clears the flag for good (glibc never sets it back). */
static int
ik_mark_base_multithreaded(void)
{
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, ik_noop_thread, NULL);
    return rc == 0 ? pthread_join(thread, NULL) : rc;
}

/* Seconds a timed-out request gets to honour the interrupt before its
 * interpreter is declared lost. */
#define IK_INTERRUPT_GRACE 2.0

/* runtime state ************************************************************/

typedef enum ik_worker_state {
    IK_WORKER_NEW,      /* thread started, interpreter initializing */
    IK_WORKER_READY,    /* waiting for or serving requests */
    IK_WORKER_FAILED,   /* initialization failed; thread has exited */
    IK_WORKER_STOPPED,  /* finalized; thread has exited */
    IK_WORKER_LOST,     /* a request never came back; thread left running */
    IK_WORKER_RETIRED,  /* not finalized on purpose; thread parked for good */
} ik_worker_state;

typedef struct ik_worker {
    int index;
    const ik_options *opts;     /* valid only during ik_runtime_start */
    char *bootstrap;
    char *executable;
    void *handle;
    ik_api api;

    pthread_t thread;
    int thread_started;
    int thread_joined;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* CLOCK_MONOTONIC; one condition, broadcast */
    ik_worker_state state;
    int stop_requested;
    int retire_requested;       /* with stop_requested: park, do not finalize */
    int in_use;                 /* a host thread owns the mailbox */

    /* mailbox, guarded by lock */
    char *request;              /* malloc'd copy; the worker frees it */
    size_t request_len;
    unsigned long serial;       /* of the request being served */
    unsigned long interrupt_serial;
    int has_response;
    int response_status;
    char *response;
    size_t response_len;
    int abandoned;              /* host gave up; worker frees the answer */
    char response_error[1024];

    ik_error start_error;
    int finalize_rc;
    double finalize_seconds;    /* how long Py_FinalizeEx took */

    /* touched only by the worker thread (and interp by the interrupt) */
    unsigned long thread_ident;  /* what PyThread_get_thread_ident() gives it */
    PyInterpreterState *interp;
    PyThreadState *tstate;
    PyObject *handler;
} ik_worker;

struct ik_runtime {
    int count;
    ik_worker *workers;
};

/* helpers ******************************************************************/

static void
ik_set_error(ik_error *err, int status, int index, const char *fmt, ...)
{
    if (err == NULL) {
        return;
    }
    err->status = status;
    err->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

static struct timespec
ik_deadline(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double whole = (double)(long)seconds;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Wait on w->cond; returns ETIMEDOUT once `deadline` (if any) has passed. */
static int
ik_wait(ik_worker *w, const struct timespec *deadline)
{
    if (deadline == NULL) {
        return pthread_cond_wait(&w->cond, &w->lock);
    }
    return pthread_cond_timedwait(&w->cond, &w->lock, deadline);
}

static int
ik_load_symbols(ik_worker *w, ik_error *err)
{
    for (size_t k = 0; k < sizeof(ik_symbols) / sizeof(ik_symbols[0]); k++) {
        void *address = dlsym(w->handle, ik_symbols[k].name);
        if (address == NULL) {
            ik_set_error(err, IK_ERR_SYMBOL, w->index,
                         "cannot start interpreter %d (symbol %s not found in "
                         "its namespace)", w->index, ik_symbols[k].name);
            return -1;
        }
        memcpy((char *)&w->api + ik_symbols[k].offset, &address, sizeof(void *));
    }
    return 0;
}

/* worker thread (runs inside the namespace) ********************************/

/* Describe and clear the namespace's pending exception.  GIL held. */
static void
ik_describe_exception(ik_worker *w, char *buf, size_t len)
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

/* Pending call scheduled by a host whose request timed out; runs on the
 * worker thread with the GIL held.  It raises TimeoutError into the code being
 * executed through the async-exception path, which also clears the flag the
 * host used to wake the eval loop (see ik_runtime_submit); a request that
 * already finished is left alone. */
static int
ik_interrupt(void *arg)
{
    ik_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    int current = w->interrupt_serial == w->serial && !w->has_response;
    pthread_mutex_unlock(&w->lock);
    if (current) {
        w->api.PyThreadState_SetAsyncExc(w->thread_ident, *w->api.PyExc_TimeoutError);
    }
    return 0;
}

static int
ik_worker_initialize(ik_worker *w)
{
    ik_api *api = &w->api;
    PyConfig config;
    api->PyConfig_InitPythonConfig(&config);
    /* The host owns signals and the C stdio modes; argv belongs to the host. */
    config.install_signal_handlers = 0;
    config.configure_c_stdio = 0;
    config.parse_argv = 0;
    /* Without an absolute program name, path configuration searches $PATH
     * for "python3" and may pick another installation's stdlib. */
    PyStatus status = api->PyConfig_SetBytesString(&config, &config.program_name,
                                                   w->executable);
    if (!api->PyStatus_Exception(status)) {
        status = api->Py_InitializeFromConfig(&config);
    }
    api->PyConfig_Clear(&config);
    if (api->PyStatus_Exception(status)) {
        ik_set_error(&w->start_error, IK_ERR_INIT, w->index,
                     "cannot initialize interpreter %d (%s: %s)", w->index,
                     status.func ? status.func : "Py_InitializeFromConfig",
                     status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    w->interp = api->PyInterpreterState_Get();
    w->thread_ident = (unsigned long)pthread_self();

    PyObject *main_module = api->PyImport_AddModule("__main__");  /* borrowed */
    PyObject *globals = main_module ? api->PyModule_GetDict(main_module) : NULL;
    PyObject *index = api->PyLong_FromLong(w->index);
    if (globals == NULL || index == NULL
        || api->PyDict_SetItemString(globals, "_ik_index", index) < 0) {
        goto error;
    }
    api->Py_DecRef(index);
    index = NULL;
    PyObject *result = api->PyRun_StringFlags(w->bootstrap, Py_file_input,
                                              globals, globals, NULL);
    if (result == NULL) {
        goto error;
    }
    api->Py_DecRef(result);
    w->handler = api->PyDict_GetItemString(globals, "_ik_handle");
    if (w->handler == NULL) {
        ik_set_error(&w->start_error, IK_ERR_BOOTSTRAP, w->index,
                     "cannot start interpreter %d (bootstrap did not define "
                     "_ik_handle)", w->index);
        return -1;
    }
    api->Py_IncRef(w->handler);
    return 0;

error:
    if (index) api->Py_DecRef(index);
    char text[1024];
    ik_describe_exception(w, text, sizeof(text));
    ik_set_error(&w->start_error, IK_ERR_BOOTSTRAP, w->index,
                 "cannot start interpreter %d (bootstrap raised %s)", w->index, text);
    return -1;
}

/* Run one request with the GIL held; fills the answer fields (unlocked:
 * only this thread writes them before publishing under the lock). */
static void
ik_worker_serve(ik_worker *w, const char *request, size_t request_len,
                int *status, char **response, size_t *response_len,
                char *error, size_t error_len)
{
    ik_api *api = &w->api;
    *status = IK_OK;
    *response = NULL;
    *response_len = 0;
    PyObject *argument = api->PyBytes_FromStringAndSize(request,
                                                        (Py_ssize_t)request_len);
    PyObject *result = argument
        ? api->PyObject_CallFunctionObjArgs(w->handler, argument, NULL) : NULL;
    char *data;
    Py_ssize_t size;
    if (result == NULL || api->PyBytes_AsStringAndSize(result, &data, &size) < 0) {
        ik_describe_exception(w, error, error_len);
        *status = IK_ERR_REMOTE;
    }
    else if ((*response = malloc(size ? (size_t)size : 1)) == NULL) {
        snprintf(error, error_len, "MemoryError: cannot copy a %zd-byte answer",
                 size);
        *status = IK_ERR_MEMORY;
    }
    else {
        memcpy(*response, data, (size_t)size);
        *response_len = (size_t)size;
    }
    if (argument) api->Py_DecRef(argument);
    if (result) api->Py_DecRef(result);
}

/* Retire: leave the interpreter initialized, its GIL released (the caller
 * saved its thread state), and never end this thread: nothing of the
 * interpreter's libraries is finalized, no thread-exit handler of its libc
 * runs, and its namespace stays loaded until the process exits.  After the
 * state is published this thread touches no runtime memory, so the runtime
 * may be freed under it.  Every signal is blocked so that none is ever
 * delivered here (glibc keeps its own internal ones deliverable). */
static void
ik_worker_park(ik_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->state = IK_WORKER_RETIRED;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    for (;;) {
        pause();
    }
}

static void *
ik_worker_main(void *arg)
{
    ik_worker *w = arg;
    /* docs/facts.md fact 2, the other way round: the namespace's libc created this
     * thread and set up its own per-thread ctype tables; the base libc, whose
     * code (this file) also runs here, did not. */
    if (ik_base_ctype_init != NULL) {
        ik_base_ctype_init();
    }

    int failed = ik_worker_initialize(w) < 0;
    if (failed && w->interp != NULL) {
        /* Initialized but the bootstrap failed: finalize here, on the
         * interpreter's own thread (fact 7). */
        w->api.Py_FinalizeEx();
    }
    pthread_mutex_lock(&w->lock);
    w->state = failed ? IK_WORKER_FAILED : IK_WORKER_READY;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (failed) {
        return NULL;
    }
    /* Idle with the GIL released so threads the interpreter started can run. */
    w->tstate = w->api.PyEval_SaveThread();

    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->request == NULL && !w->stop_requested) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->request == NULL) {       /* stop requested, mailbox empty */
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
        ik_worker_serve(w, request, request_len, &status, &response,
                        &response_len, error, sizeof(error));
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

    pthread_mutex_lock(&w->lock);
    int retire = w->retire_requested;
    pthread_mutex_unlock(&w->lock);
    if (retire) {
        ik_worker_park(w);      /* never returns */
    }

    /* docs/facts.md fact 7: never let this thread end holding the GIL (torch's
     * static destructors would hang process exit in gil_scoped_acquire);
     * finalize on the thread that owns the interpreter. */
    struct timespec started, finished;
    clock_gettime(CLOCK_MONOTONIC, &started);
    w->api.PyEval_RestoreThread(w->tstate);
    w->api.Py_DecRef(w->handler);
    w->handler = NULL;
    int rc = w->api.Py_FinalizeEx();
#if PY_VERSION_HEX >= 0x030C0000
    /* The namespace is used up once its interpreter is finalized: run the exit handlers
     * its libraries registered with its libc (atexit, C++ static destructors) here, on
     * the thread its libc created, not at process exit on the main thread, where that
     * libc reads the base libc's thread-specific values under its own key numbers
     * (docs/facts.md fact 14: OpenSSL 3.6's OPENSSL_cleanup crashed there after scipy).
     * Measured on 3.12-3.15; 3.11's teardown (fact 8, with torch) is left as it was. */
    if (rc == 0) {
        w->api.ns_cxa_finalize(NULL);
    }
#endif
    clock_gettime(CLOCK_MONOTONIC, &finished);
    pthread_mutex_lock(&w->lock);
    w->finalize_rc = rc;
    w->finalize_seconds = (double)(finished.tv_sec - started.tv_sec)
                          + (double)(finished.tv_nsec - started.tv_nsec) / 1e9;
    w->state = IK_WORKER_STOPPED;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* host side ****************************************************************/

static int
ik_worker_setup(ik_worker *w, int index, const ik_options *opts)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->state = IK_WORKER_NEW;
    w->finalize_rc = -1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->lock, NULL);
    w->bootstrap = strdup(opts->bootstrap);
    w->executable = strdup(opts->executable);
    return (w->bootstrap && w->executable) ? 0 : -1;
}

static ik_worker *
ik_get_worker(ik_runtime *rt, int index, ik_error *err)
{
    if (rt == NULL || index < 0 || index >= rt->count) {
        ik_set_error(err, IK_ERR_ARGUMENT, index,
                     "no interpreter %d (runtime has %d)", index,
                     rt ? rt->count : 0);
        return NULL;
    }
    return &rt->workers[index];
}

/* Join w's thread if it has finished; then unload its namespace when the
 * interpreter was finalized cleanly.  Returns 0, or -1 if the thread could
 * not be joined before `deadline`. */
static int
ik_worker_reap(ik_worker *w, const struct timespec *deadline)
{
    pthread_mutex_lock(&w->lock);
    int status = 0;
    while (w->state == IK_WORKER_NEW || w->state == IK_WORKER_READY) {
        if (ik_wait(w, deadline) == ETIMEDOUT) {
            status = -1;
            break;
        }
    }
    int finished = w->state == IK_WORKER_STOPPED || w->state == IK_WORKER_FAILED;
    int retired = w->state == IK_WORKER_RETIRED;
    int unload = w->state == IK_WORKER_FAILED
                 || (w->state == IK_WORKER_STOPPED && w->finalize_rc == 0);
    pthread_mutex_unlock(&w->lock);
    if (retired) {
        return 0;               /* parked for good: never joined, never unloaded */
    }
    if (!finished) {
        return -1;
    }
    if (w->thread_started && !w->thread_joined) {
        /* The state changes just before the thread returns.  Joined by the
         * libc that created it, which frees its stack and TLS. */
        w->api.ns_pthread_join(w->thread, NULL);
        w->thread_joined = 1;
    }
    if (unload && w->handle != NULL) {
        /* Frees the namespace slot for later dlmopen calls; objects glibc
         * marked NODELETE (e.g. with STB_GNU_UNIQUE symbols) stay mapped. */
        dlclose(w->handle);
        w->handle = NULL;
    }
    return status;
}

static int
ik_worker_end(ik_runtime *rt, int index, double timeout, int retire, ik_error *err)
{
    ik_worker *w = ik_get_worker(rt, index, err);
    if (w == NULL) {
        return IK_ERR_ARGUMENT;
    }
    struct timespec deadline = ik_deadline(timeout);
    const struct timespec *limit = timeout > 0 ? &deadline : NULL;
    pthread_mutex_lock(&w->lock);
    if (w->state == IK_WORKER_LOST) {
        w->stop_requested = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        ik_set_error(err, IK_ERR_CLOSED, index,
                     "cannot stop interpreter %d (lost: a request never came "
                     "back; its thread is left running)", index);
        return IK_ERR_CLOSED;
    }
    /* Let a request in flight finish first. */
    while (w->in_use && w->state == IK_WORKER_READY) {
        if (ik_wait(w, limit) == ETIMEDOUT) {
            break;
        }
    }
    if (!w->stop_requested) {   /* the first request decides finalize or retire */
        w->retire_requested = retire;
    }
    w->stop_requested = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (!w->thread_started) {
        return 0;
    }
    if (ik_worker_reap(w, limit) < 0) {
        ik_set_error(err, IK_ERR_TIMEOUT, index,
                     "cannot stop interpreter %d (finalization did not finish "
                     "in %.1f s)", index, timeout);
        return IK_ERR_TIMEOUT;
    }
    return w->state == IK_WORKER_STOPPED ? w->finalize_rc : 0;
}

int
ik_runtime_stop(ik_runtime *rt, int index, double timeout, ik_error *err)
{
    return ik_worker_end(rt, index, timeout, 0, err);
}

int
ik_runtime_retire(ik_runtime *rt, int index, double timeout, ik_error *err)
{
    return ik_worker_end(rt, index, timeout, 1, err);
}

int
ik_runtime_teardown(ik_runtime *rt, int index, ik_teardown *out)
{
    ik_worker *w = ik_get_worker(rt, index, NULL);
    if (w == NULL || out == NULL) {
        return IK_ERR_ARGUMENT;
    }
    pthread_mutex_lock(&w->lock);
    switch (w->state) {
    case IK_WORKER_STOPPED:
        out->state = IK_TEARDOWN_FINALIZED;
        break;
    case IK_WORKER_RETIRED:
        out->state = IK_TEARDOWN_RETIRED;
        break;
    case IK_WORKER_LOST:
        out->state = IK_TEARDOWN_LOST;
        break;
    case IK_WORKER_FAILED:
        out->state = IK_TEARDOWN_FAILED;
        break;
    default:
        out->state = w->stop_requested && w->thread_started
                     ? IK_TEARDOWN_FINALIZING : IK_TEARDOWN_RUNNING;
        break;
    }
    out->finalize_rc = w->finalize_rc;
    out->finalize_seconds = w->finalize_seconds;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int
ik_runtime_shutdown(ik_runtime *rt, double timeout)
{
    if (rt == NULL) {
        return 0;
    }
    int leaked = 0;
    /* Ask every interpreter to stop first so they finalize in parallel. */
    for (int i = 0; i < rt->count; i++) {
        ik_worker *w = &rt->workers[i];
        pthread_mutex_lock(&w->lock);
        w->stop_requested = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    for (int i = 0; i < rt->count; i++) {
        ik_worker *w = &rt->workers[i];
        if (!w->thread_started) {
            if (w->handle != NULL) {    /* opened, but its thread never ran */
                dlclose(w->handle);
                w->handle = NULL;
            }
            continue;
        }
        if (w->thread_joined) {
            continue;
        }
        if (w->state != IK_WORKER_LOST) {
            ik_runtime_stop(rt, i, timeout, NULL);
        }
        pthread_mutex_lock(&w->lock);
        int retired = w->state == IK_WORKER_RETIRED;
        pthread_mutex_unlock(&w->lock);
        if (!w->thread_joined && !retired) {
            leaked++;
        }
    }
    return leaked;
}

int
ik_runtime_close(ik_runtime *rt, double timeout)
{
    if (rt == NULL) {
        return 0;
    }
    int leaked = ik_runtime_shutdown(rt, timeout);
    if (leaked) {
        /* A worker stuck in user code: its memory must stay valid, so
         * the runtime is leaked rather than freed under it. */
        return leaked;
    }
    for (int i = 0; i < rt->count; i++) {
        ik_worker *w = &rt->workers[i];
        free(w->bootstrap);
        free(w->executable);
        free(w->response);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
    }
    free(rt->workers);
    free(rt);
    return 0;
}

ik_runtime *
ik_runtime_start(const ik_options *opts, ik_error *err)
{
    if (opts == NULL || opts->count < 1 || opts->libpython == NULL
        || opts->executable == NULL || opts->bootstrap == NULL) {
        ik_set_error(err, IK_ERR_ARGUMENT, -1,
                     "cannot start runtime (count must be >= 1 and libpython, "
                     "executable and bootstrap given)");
        return NULL;
    }
    ik_runtime *rt = calloc(1, sizeof(*rt));
    if (rt == NULL || (rt->workers = calloc((size_t)opts->count,
                                            sizeof(ik_worker))) == NULL) {
        free(rt);
        ik_set_error(err, IK_ERR_MEMORY, -1, "cannot start runtime (out of memory)");
        return NULL;
    }
    rt->count = opts->count;
    if (ik_base_ctype_init == NULL) {
        *(void **)&ik_base_ctype_init = dlsym(RTLD_DEFAULT, "__ctype_init");
    }
    for (int i = 0; i < rt->count; i++) {
        if (ik_worker_setup(&rt->workers[i], i, opts) < 0) {
            ik_set_error(err, IK_ERR_MEMORY, i, "cannot start runtime (out of memory)");
            goto error;
        }
    }
    if (ik_mark_base_multithreaded() != 0) {
        ik_set_error(err, IK_ERR_THREAD, -1, "cannot start runtime (pthread_create failed)");
        goto error;
    }
    for (int i = 0; i < rt->count; i++) {
        ik_worker *w = &rt->workers[i];
        /* docs/facts.md fact 5: this is where the namespace and static TLS
         * limits show up; the caller classifies dlerror()'s text. */
        w->handle = dlmopen(LM_ID_NEWLM, opts->libpython, RTLD_NOW | RTLD_LOCAL);
        if (w->handle == NULL) {
            const char *reason = dlerror();
            ik_set_error(err, IK_ERR_DLMOPEN, i, "%s", reason ? reason : "dlmopen failed");
            goto error;
        }
        if (ik_load_symbols(w, err) < 0) {
            goto error;
        }
        /* docs/facts.md fact 4: every namespace's libc numbers its TSS keys from
         * scratch, so a thread that entered two interpreters would find one's
         * thread state in the other's slot.  This thread is the only one that
         * ever runs interpreter i, from Py_InitializeFromConfig to Py_FinalizeEx. */
        /* Created by the namespace's own libc, not the base one: thread-local
         * state that the interpreter's libc keeps in the thread descriptor
         * (pthread_setspecific's second-level arrays, calloc'd by that libc)
         * is then freed at thread exit by that libc's __nptl_deallocate_tsd,
         * with that libc's free and key table.  A base-created worker has it
         * freed by the base libc: "double free or corruption (out)" in
         * tcache_thread_shutdown, or the base's key destructors (a host's
         * own torch) run on the namespace's values.  native/README.md,
         * "Teardown", has the measurements. */
        int rc = w->api.ns_pthread_create(&w->thread, NULL, ik_worker_main, w);
        if (rc != 0) {
            ik_set_error(err, IK_ERR_THREAD, i,
                         "cannot start interpreter %d (pthread_create: %s)", i,
                         strerror(rc));
            goto error;
        }
        w->thread_started = 1;
    }
    /* Interpreters initialize in parallel; wait for all of them. */
    struct timespec deadline = ik_deadline(opts->start_timeout);
    for (int i = 0; i < rt->count; i++) {
        ik_worker *w = &rt->workers[i];
        pthread_mutex_lock(&w->lock);
        int timed_out = 0;
        while (w->state == IK_WORKER_NEW && !timed_out) {
            timed_out = ik_wait(w, opts->start_timeout > 0 ? &deadline : NULL)
                        == ETIMEDOUT;
        }
        ik_worker_state state = w->state;
        pthread_mutex_unlock(&w->lock);
        if (state == IK_WORKER_FAILED) {
            if (err) *err = w->start_error;
            goto error;
        }
        if (state != IK_WORKER_READY) {
            ik_set_error(err, IK_ERR_TIMEOUT, i,
                         "cannot start interpreter %d (not ready after %.1f s)",
                         i, opts->start_timeout);
            goto error;
        }
    }
    return rt;

error:
    /* Workers still initializing are waited for: they will see
     * stop_requested once ready and finalize themselves. */
    ik_runtime_close(rt, opts->start_timeout > 0 ? opts->start_timeout : 0);
    return NULL;
}

int
ik_runtime_count(const ik_runtime *rt)
{
    return rt ? rt->count : 0;
}

int
ik_runtime_alive(ik_runtime *rt, int index)
{
    ik_worker *w = ik_get_worker(rt, index, NULL);
    if (w == NULL) {
        return 0;
    }
    pthread_mutex_lock(&w->lock);
    int alive = w->state == IK_WORKER_READY && !w->stop_requested;
    pthread_mutex_unlock(&w->lock);
    return alive;
}

int
ik_runtime_submit(ik_runtime *rt, int index, const char *request,
                  size_t request_len, double timeout, char **response,
                  size_t *response_len, ik_error *err)
{
    ik_worker *w = ik_get_worker(rt, index, err);
    if (w == NULL) {
        return IK_ERR_ARGUMENT;
    }
    char *copy = malloc(request_len ? request_len : 1);
    if (copy == NULL) {
        ik_set_error(err, IK_ERR_MEMORY, index, "cannot copy the request (out of memory)");
        return IK_ERR_MEMORY;
    }
    memcpy(copy, request, request_len);
    struct timespec deadline = ik_deadline(timeout);
    const struct timespec *limit = timeout > 0 ? &deadline : NULL;
    int status = IK_OK;

    pthread_mutex_lock(&w->lock);
    while (w->in_use && w->state == IK_WORKER_READY && !w->stop_requested) {
        if (ik_wait(w, limit) == ETIMEDOUT) {
            ik_set_error(err, IK_ERR_TIMEOUT, index,
                         "interpreter %d stayed busy for %.1f s", index, timeout);
            status = IK_ERR_TIMEOUT;
            goto done;
        }
    }
    if (w->state != IK_WORKER_READY || w->stop_requested) {
        ik_set_error(err, IK_ERR_CLOSED, index, "interpreter %d is %s", index,
                     w->state == IK_WORKER_LOST ? "lost (an earlier request never came back)"
                                                : "closed");
        status = IK_ERR_CLOSED;
        goto done;
    }
    w->in_use = 1;
    w->serial++;
    w->request = copy;
    w->request_len = request_len;
    copy = NULL;
    pthread_cond_broadcast(&w->cond);
    while (!w->has_response) {
        if (ik_wait(w, limit) == ETIMEDOUT) {
            break;
        }
    }
    if (!w->has_response) {
        /* Interrupt Python code with a pending call, then give it a grace
         * period; code blocked in C while holding the GIL cannot be interrupted. */
        w->interrupt_serial = w->serial;
#if PY_VERSION_HEX < 0x030C0000
        w->api._PyEval_AddPendingCall(w->interp, ik_interrupt, w);
        /* 3.11 sets the eval breaker for a pending call only when the caller
         * is the interpreter's main thread, which this host thread is not.
         * The async-exception signal sets it unconditionally (plain stores),
         * so even a loop that never releases the GIL runs the pending call.
         * If the request finished meanwhile, the flag stays set until the
         * next async exception: correct, only a little slower. */
        w->api._PyEval_SignalAsyncExc(w->interp);
#else
        w->api.Py_AddPendingCall(ik_interrupt, w);
#if PY_VERSION_HEX < 0x030D0000
        /* 3.12 still sets the eval breaker only from the main thread (as 3.11 above);
         * 3.13+ sets the bit in the thread state holding that interpreter's GIL. */
        w->api._PyEval_SignalAsyncExc(w->interp);
#endif
#endif
        struct timespec grace = ik_deadline(IK_INTERRUPT_GRACE);
        while (!w->has_response) {
            if (ik_wait(w, &grace) == ETIMEDOUT) {
                break;
            }
        }
        if (w->has_response) {
            free(w->response);
            w->response = NULL;
            w->has_response = 0;
            ik_set_error(err, IK_ERR_TIMEOUT, index,
                         "interpreter %d did not answer within %.1f s "
                         "(request interrupted)", index, timeout);
        }
        else {
            w->abandoned = 1;
            w->state = IK_WORKER_LOST;
            ik_set_error(err, IK_ERR_TIMEOUT, index,
                         "interpreter %d did not answer within %.1f s and "
                         "ignored the interrupt (interpreter marked lost)",
                         index, timeout);
        }
        status = IK_ERR_TIMEOUT;
    }
    else {
        status = w->response_status;
        if (status == IK_OK) {
            *response = w->response;
            *response_len = w->response_len;
        }
        else {
            ik_set_error(err, status, index, "%s", w->response_error);
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

int
ik_runtime_linkmap(ik_runtime *rt, int index, ik_linkmap_entry **entries,
                   ik_error *err)
{
    ik_worker *w = ik_get_worker(rt, index, err);
    if (w == NULL) {
        return IK_ERR_ARGUMENT;
    }
    struct link_map *map = NULL;
    if (w->handle == NULL || dlinfo(w->handle, RTLD_DI_LINKMAP, &map) != 0
        || map == NULL) {
        ik_set_error(err, IK_ERR_CLOSED, index,
                     "cannot list objects of interpreter %d (namespace unloaded)",
                     index);
        return IK_ERR_CLOSED;
    }
    while (map->l_prev != NULL) {
        map = map->l_prev;
    }
    int count = 0;
    for (struct link_map *m = map; m != NULL; m = m->l_next) {
        count++;
    }
    *entries = calloc((size_t)count + 1, sizeof(ik_linkmap_entry));
    if (*entries == NULL) {
        ik_set_error(err, IK_ERR_MEMORY, index, "out of memory");
        return IK_ERR_MEMORY;
    }
    int k = 0;
    for (struct link_map *m = map; m != NULL; m = m->l_next, k++) {
        (*entries)[k].path = m->l_name ? m->l_name : "";
        (*entries)[k].base = (unsigned long)m->l_addr;
    }
    return count;
}

long
ik_runtime_namespace(ik_runtime *rt, int index)
{
    ik_worker *w = ik_get_worker(rt, index, NULL);
    Lmid_t lmid;
    if (w == NULL || w->handle == NULL || dlinfo(w->handle, RTLD_DI_LMID, &lmid) != 0) {
        return -1;
    }
    return (long)lmid;
}
