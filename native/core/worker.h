/* worker.h -- the worker core every interpkit C runtime is built on: one
 * CPython interpreter served by one dedicated OS thread, a one-slot mailbox
 * between host threads and that thread, the timeout interrupt, and
 * finalize-or-retire at the end.
 *
 * A runtime (namespaces: native/namespaces/runtime.c; copies:
 * native/copies/_copies.c) only decides how the interpreter's libpython is
 * loaded (dlmopen into a new namespace, or dlopen of a renamed copy) and which
 * libc creates and joins the thread; everything from Py_InitializeFromConfig
 * to Py_FinalizeEx is here, written once.
 *
 * Every Py* call goes through a pointer looked up with dlsym on the loaded
 * libpython's handle; the host's Python.h gives only types and struct
 * layouts, which match because it is the same libpython.
 */
#ifndef IK_WORKER_H
#define IK_WORKER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "status.h"

/* The Python C API of one loaded libpython. */
typedef struct ik_python_api {
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
#if PY_VERSION_HEX < 0x030C0000
    int (*_PyEval_AddPendingCall)(PyInterpreterState *, int (*)(void *), void *);
    void (*_PyEval_SignalAsyncExc)(PyInterpreterState *);
#else
    /* 3.12+ (built per Python, native/namespaces/build.py): the private call takes more
     * arguments; the public one reaches the main interpreter's main thread, which in a
     * namespace of its own is this worker's. */
    int (*Py_AddPendingCall)(int (*)(void *), void *);
#if PY_VERSION_HEX < 0x030D0000
    void (*_PyEval_SignalAsyncExc)(PyInterpreterState *);
#endif
#endif
    int (*PyThreadState_SetAsyncExc)(unsigned long, PyObject *);
    int (*Py_FinalizeEx)(void);
} ik_python_api;

typedef enum ik_worker_state {
    IK_WORKER_NEW,      /* thread started, interpreter initializing */
    IK_WORKER_READY,    /* waiting for or serving requests */
    IK_WORKER_FAILED,   /* initialization failed; thread has exited */
    IK_WORKER_STOPPED,  /* finalized; thread has exited */
    IK_WORKER_LOST,     /* a request never came back; thread left running */
    IK_WORKER_RETIRED,  /* not finalized on purpose; thread parked for good */
} ik_worker_state;

typedef int (*ik_thread_create)(pthread_t *, const pthread_attr_t *,
                                void *(*)(void *), void *);
typedef int (*ik_thread_join)(pthread_t, void **);

/* One interpreter, its thread and its mailbox.  Shared by host threads and
 * the worker thread; the runtime owns its memory and may free it (with
 * ik_worker_release) once ik_worker_may_free says so. */
typedef struct ik_worker {
    /* set by the runtime before ik_worker_spawn */
    int index;
    char *executable;           /* program_name: keeps path configuration on this Python */
    char *bootstrap;            /* source run in __main__; defines _ik_handle */
    int site_import;            /* 0: site is left to the bootstrap */
    void *handle;               /* the loaded libpython */
    ik_python_api api;
    ik_thread_create create_thread;  /* the libc that runs the thread's exit path */
    ik_thread_join join_thread;
    /* The exit handlers of the worker's own libc (a namespace's __cxa_finalize), run on
     * this thread once its interpreter finalized cleanly; NULL where the libc is the
     * process's own (copies), whose handlers belong to process exit. */
    void (*run_exit_handlers)(void *);
    void (*thread_setup)(void); /* first call on the new thread, or NULL */

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
    long native_thread;         /* kernel thread id */
    unsigned long thread_ident; /* what PyThread_get_thread_ident() gives it */
    PyInterpreterState *interp;
    PyThreadState *tstate;
    PyObject *handler;
} ik_worker;

/* A CLOCK_MONOTONIC deadline `seconds` from now. */
struct timespec ik_deadline(double seconds);

/* Zero *w and set up its lock, condition and strings; threads are created and
 * joined by the base libc unless the runtime sets create_thread/join_thread.
 * 0, or -1 when out of memory. */
int ik_worker_setup(ik_worker *w, int index, const char *executable,
                    const char *bootstrap);

/* Free what ik_worker_setup allocated (not *w itself). */
void ik_worker_release(ik_worker *w);

/* Fill w->api from w->handle; `where` names the handle in the error
 * ("namespace", "libpython copy"). */
int ik_worker_load_api(ik_worker *w, const char *where, ik_error *err);

/* Start w's thread (it initializes the interpreter, then serves). */
int ik_worker_spawn(ik_worker *w, ik_error *err);

/* Wait until initialization finished (timeout <= 0: forever); the state. */
ik_worker_state ik_worker_wait_ready(ik_worker *w, double timeout);

/* 1 while w can take requests. */
int ik_worker_alive(ik_worker *w);

/* One request, one answer (see ik_runtime_submit in include/interpkit.h). */
int ik_worker_submit(ik_worker *w, const char *request, size_t request_len,
                     double timeout, char **response, size_t *response_len,
                     ik_error *err);

/* Ask w to stop without waiting (so several finalize in parallel). */
void ik_worker_request_stop(ik_worker *w);

/* Stop w: finalize it on its own thread (or retire it: park it without
 * finalizing), join the thread and dlclose the libpython when it finalized
 * cleanly.  The first stop request decides finalize or retire.  Returns
 * Py_FinalizeEx's result (0 or -1), 0 when retired, or an ik_status. */
int ik_worker_end(ik_worker *w, double timeout, int retire, ik_error *err);

/* What happened to w at teardown so far. */
void ik_worker_teardown(ik_worker *w, ik_teardown *out);

/* 1 when no thread will touch w again (never started, joined, or parked). */
int ik_worker_may_free(ik_worker *w);

#endif /* IK_WORKER_H */
