/* status.h -- the status codes and error record every interpkit runtime's C
 * side returns (the namespaces runtime's C API in include/interpkit.h and the
 * copies runtime's binding use the same numbers).  No Python types here, so
 * the C API header can include it without Python.h. */
#ifndef IK_STATUS_H
#define IK_STATUS_H

typedef enum ik_status {
    IK_OK = 0,
    IK_ERR_DLMOPEN = -1,    /* dlmopen/dlopen of libpython failed; message is dlerror() */
    IK_ERR_SYMBOL = -2,     /* a required symbol is missing in the loaded libpython */
    IK_ERR_INIT = -3,       /* Py_InitializeFromConfig failed */
    IK_ERR_BOOTSTRAP = -4,  /* the bootstrap source raised */
    IK_ERR_THREAD = -5,     /* pthread_create failed */
    IK_ERR_TIMEOUT = -6,    /* no answer in time; interpreter marked lost */
    IK_ERR_CLOSED = -7,     /* interpreter finalized, lost or never started */
    IK_ERR_REMOTE = -8,     /* _ik_handle raised or returned non-bytes */
    IK_ERR_MEMORY = -9,
    IK_ERR_ARGUMENT = -10,
} ik_status;

typedef struct ik_error {
    int status;             /* an ik_status */
    int index;              /* interpreter the error belongs to, or -1 */
    char message[2048];
} ik_error;

typedef enum ik_teardown_state {
    IK_TEARDOWN_RUNNING = 0,    /* not torn down */
    IK_TEARDOWN_FINALIZED = 1,  /* Py_FinalizeEx ran on its thread; joined */
    IK_TEARDOWN_RETIRED = 2,    /* parked without finalizing */
    IK_TEARDOWN_LOST = 3,       /* a request never came back; thread running */
    IK_TEARDOWN_FINALIZING = 4, /* stop asked, finalization not finished */
    IK_TEARDOWN_FAILED = 5,     /* never started (initialization failed) */
} ik_teardown_state;

typedef struct ik_teardown {
    int state;                  /* an ik_teardown_state */
    int finalize_rc;            /* Py_FinalizeEx's result when FINALIZED */
    double finalize_seconds;
} ik_teardown;

/* Fill *err (when not NULL) with a status, an interpreter index and a message. */
void ik_set_error(ik_error *err, int status, int index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* IK_STATUS_H */
