/* interpkit.h -- the namespaces runtime: N CPython interpreters in one process.
 *
 * Each interpreter is the running Python's shared libpython loaded again with
 * dlmopen(LM_ID_NEWLM), so it has its own copy of every global, and is served
 * by one dedicated OS thread for its whole life (docs/facts.md fact 4).  Traffic
 * between the host and an interpreter is opaque bytes: the interpreter's
 * bootstrap code defines `_ik_handle(request: bytes) -> bytes`.
 *
 * Every exported name starts with ik_.  Functions return 0 (or a pointer) on
 * success and a negative ik_status (or NULL) on failure, with a message in
 * the caller's ik_error.
 */
#ifndef INTERPKIT_H
#define INTERPKIT_H

#include <stddef.h>

#include "status.h"     /* ik_status, ik_error, ik_teardown (native/core/) */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ik_options {
    const char *libpython;  /* path of the shared libpython to dlmopen */
    const char *executable; /* program_name for path configuration */
    const char *bootstrap;  /* source run in each interpreter's __main__ */
    int count;              /* number of interpreters */
    double start_timeout;   /* seconds to wait for all interpreters; <= 0: forever */
} ik_options;

typedef struct ik_runtime ik_runtime;

typedef struct ik_linkmap_entry {
    const char *path;       /* "" for the namespace's main entry */
    unsigned long base;     /* l_addr: load bias of the object */
} ik_linkmap_entry;

/* Load and start opts->count interpreters; NULL and *err on failure (the
 * interpreters already started are finalized again). */
ik_runtime *ik_runtime_start(const ik_options *opts, ik_error *err);

int ik_runtime_count(const ik_runtime *rt);

/* Send `request` to interpreter `index` and wait for its answer.  On IK_OK,
 * *response is malloc'd and owned by the caller.  Callers may be on any
 * host thread; requests to one interpreter are served one at a time.
 * timeout <= 0 waits forever.  On timeout the interpreter is interrupted (a
 * pending call raising TimeoutError) and, if it still does not answer within
 * a grace period, marked lost. */
int ik_runtime_submit(ik_runtime *rt, int index, const char *request,
                      size_t request_len, double timeout, char **response,
                      size_t *response_len, ik_error *err);

/* Finalize one interpreter on its own thread and join that thread; the
 * others keep running.  Returns Py_FinalizeEx's result (0 or -1) or an
 * ik_status.  Unloads the namespace when finalization succeeded. */
int ik_runtime_stop(ik_runtime *rt, int index, double timeout, ik_error *err);

/* Objects loaded in interpreter `index`'s namespace, in link-map order.
 * *entries is malloc'd (paths point into the loader's memory and stay valid
 * while the interpreter lives).  Returns the number of entries or < 0. */
int ik_runtime_linkmap(ik_runtime *rt, int index, ik_linkmap_entry **entries,
                       ik_error *err);

/* Namespace id (Lmid_t) of interpreter `index`, or < 0. */
long ik_runtime_namespace(ik_runtime *rt, int index);

/* 1 while interpreter `index` can take requests. */
int ik_runtime_alive(ik_runtime *rt, int index);

/* Retire interpreter `index` instead of finalizing it: it stops taking
 * requests, keeps its GIL released and its thread parks until the process
 * exits (no finalizer, atexit handler or thread-exit handler of its
 * libraries runs; its namespace stays loaded).  For libraries that cannot be
 * torn down safely.  Returns 0 or an ik_status. */
int ik_runtime_retire(ik_runtime *rt, int index, double timeout, ik_error *err);

/* What happened to interpreter `index` at teardown so far. */
int ik_runtime_teardown(ik_runtime *rt, int index, ik_teardown *out);

/* Stop (finalize) every interpreter still running, in parallel, without
 * freeing the runtime, so ik_runtime_teardown can still be asked.  Returns
 * the number of worker threads that could not be joined (retired ones are
 * parked on purpose and not counted). */
int ik_runtime_shutdown(ik_runtime *rt, double timeout);

/* ik_runtime_shutdown, then free the runtime (unless a thread is left in it).
 * Returns the number of worker threads that could not be joined. */
int ik_runtime_close(ik_runtime *rt, double timeout);

#ifdef __cplusplus
}
#endif
#endif /* INTERPKIT_H */
