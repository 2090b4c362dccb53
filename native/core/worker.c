/* worker.c -- one interpreter on one thread, behind a one-slot mailbox: the
 * part every interpkit C runtime shares (see worker.h).  The measured facts
 * cited below are in docs/facts.md; native/README.md, "Teardown", has the
 * measurements behind finalize-or-retire. */
#include "worker.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Seconds a timed-out request gets to honour the interrupt before its
 * interpreter is declared lost. */
#define IK_INTERRUPT_GRACE 2.0

#define IK_SYM(field) {#field, offsetof(ik_python_api, field)}
static const struct { const char *name; size_t offset; } ik_python_symbols[] = {
    IK_SYM(PyConfig_InitPythonConfig), IK_SYM(PyConfig_SetBytesString),
    IK_SYM(Py_InitializeFromConfig), IK_SYM(PyStatus_Exception),
    IK_SYM(PyConfig_Clear), IK_SYM(PyImport_AddModule), IK_SYM(PyModule_GetDict),
    IK_SYM(PyRun_StringFlags), IK_SYM(PyDict_GetItemString),
    IK_SYM(PyDict_SetItemString), IK_SYM(PyLong_FromLong),
    IK_SYM(PyBytes_FromStringAndSize), IK_SYM(PyBytes_AsStringAndSize),
    IK_SYM(PyObject_CallFunctionObjArgs), IK_SYM(PyObject_Str),
    IK_SYM(PyUnicode_AsUTF8), IK_SYM(PyErr_Fetch), IK_SYM(PyErr_Clear),
    IK_SYM(PyExc_TimeoutError), IK_SYM(Py_IncRef), IK_SYM(Py_DecRef),
    IK_SYM(PyEval_SaveThread), IK_SYM(PyEval_RestoreThread),
    IK_SYM(PyInterpreterState_Get),
#if PY_VERSION_HEX < 0x030C0000
    IK_SYM(_PyEval_AddPendingCall), IK_SYM(_PyEval_SignalAsyncExc),
#else
    IK_SYM(Py_AddPendingCall),
#if PY_VERSION_HEX < 0x030D0000
    IK_SYM(_PyEval_SignalAsyncExc),
#endif
#endif
    IK_SYM(PyThreadState_SetAsyncExc), IK_SYM(Py_FinalizeEx),
};
#undef IK_SYM

/* helpers ******************************************************************/

void
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

struct timespec
ik_deadline(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long whole = (long)seconds;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - (double)whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Wait on w->cond (lock held); ETIMEDOUT once `deadline` (if any) has passed. */
static int
ik_wait(ik_worker *w, const struct timespec *deadline)
{
    return deadline ? pthread_cond_timedwait(&w->cond, &w->lock, deadline)
                    : pthread_cond_wait(&w->cond, &w->lock);
}

int
ik_worker_setup(ik_worker *w, int index, const char *executable, const char *bootstrap)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->state = IK_WORKER_NEW;
    w->finalize_rc = -1;
    w->site_import = 1;
    w->create_thread = pthread_create;
    w->join_thread = pthread_join;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->lock, NULL);
    w->executable = strdup(executable);
    w->bootstrap = strdup(bootstrap);
    return (w->executable && w->bootstrap) ? 0 : -1;
}

void
ik_worker_release(ik_worker *w)
{
    free(w->executable);
    free(w->bootstrap);
    free(w->response);
    w->executable = w->bootstrap = w->response = NULL;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

int
ik_worker_load_api(ik_worker *w, const char *where, ik_error *err)
{
    size_t count = sizeof(ik_python_symbols) / sizeof(ik_python_symbols[0]);
    for (size_t k = 0; k < count; k++) {
        void *address = dlsym(w->handle, ik_python_symbols[k].name);
        if (address == NULL) {
            ik_set_error(err, IK_ERR_SYMBOL, w->index,
                         "cannot start interpreter %d (symbol %s not found in "
                         "its %s)", w->index, ik_python_symbols[k].name, where);
            return -1;
        }
        memcpy((char *)&w->api + ik_python_symbols[k].offset, &address, sizeof(void *));
    }
    return 0;
}

/* worker thread (runs inside the interpreter's libpython) *******************/

/* Describe and clear the interpreter's pending exception.  GIL held. */
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
 * host used to wake the eval loop (see ik_worker_submit); a request that
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
    ik_python_api *api = &w->api;
    PyConfig config;
    api->PyConfig_InitPythonConfig(&config);
    /* The host owns signals, the C stdio modes and argv. */
    config.install_signal_handlers = 0;
    config.configure_c_stdio = 0;
    config.parse_argv = 0;
    if (!w->site_import) {
        config.site_import = 0;
    }
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
    ik_python_api *api = &w->api;
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
 * runs, and its libpython stays loaded until the process exits.  After the
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
    w->native_thread = (long)syscall(SYS_gettid);
    if (w->thread_setup != NULL) {
        w->thread_setup();
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
     * (docs/facts.md: OpenSSL 3.6's OPENSSL_cleanup crashed there after scipy).
     * Measured on 3.12-3.15; 3.11's teardown (with torch) is left as it was. */
    if (rc == 0 && w->run_exit_handlers != NULL) {
        w->run_exit_handlers(NULL);
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

int
ik_worker_spawn(ik_worker *w, ik_error *err)
{
    int rc = w->create_thread(&w->thread, NULL, ik_worker_main, w);
    if (rc != 0) {
        ik_set_error(err, IK_ERR_THREAD, w->index,
                     "cannot start interpreter %d (pthread_create: %s)", w->index,
                     strerror(rc));
        return IK_ERR_THREAD;
    }
    w->thread_started = 1;
    return IK_OK;
}

ik_worker_state
ik_worker_wait_ready(ik_worker *w, double timeout)
{
    struct timespec deadline = ik_deadline(timeout);
    pthread_mutex_lock(&w->lock);
    while (w->state == IK_WORKER_NEW) {
        if (ik_wait(w, timeout > 0 ? &deadline : NULL) == ETIMEDOUT) {
            break;
        }
    }
    ik_worker_state state = w->state;
    pthread_mutex_unlock(&w->lock);
    return state;
}

int
ik_worker_alive(ik_worker *w)
{
    pthread_mutex_lock(&w->lock);
    int alive = w->state == IK_WORKER_READY && !w->stop_requested;
    pthread_mutex_unlock(&w->lock);
    return alive;
}

int
ik_worker_submit(ik_worker *w, const char *request, size_t request_len,
                 double timeout, char **response, size_t *response_len,
                 ik_error *err)
{
    int index = w->index;
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

void
ik_worker_request_stop(ik_worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->stop_requested = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Join w's thread if it has finished; then unload its libpython when the
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
        w->join_thread(w->thread, NULL);
        w->thread_joined = 1;
    }
    if (unload && w->handle != NULL) {
        /* Frees a namespace slot for later dlmopen calls; objects glibc
         * marked NODELETE (e.g. with STB_GNU_UNIQUE symbols) stay mapped. */
        dlclose(w->handle);
        w->handle = NULL;
    }
    return status;
}

int
ik_worker_end(ik_worker *w, double timeout, int retire, ik_error *err)
{
    int index = w->index;
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
ik_worker_may_free(ik_worker *w)
{
    if (!w->thread_started || w->thread_joined) {
        return 1;
    }
    pthread_mutex_lock(&w->lock);
    int retired = w->state == IK_WORKER_RETIRED;
    pthread_mutex_unlock(&w->lock);
    return retired;
}

void
ik_worker_teardown(ik_worker *w, ik_teardown *out)
{
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
}
