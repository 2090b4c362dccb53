/* runtime.c -- the namespaces runtime: N CPython interpreters in one
 * process, one link-map namespace and one OS thread each.  See
 * include/interpkit.h for the contract and docs/facts.md for the measured
 * facts cited below.  The worker thread, its mailbox, the interrupt and
 * finalize-or-retire are the shared core (native/core/worker.c); this file
 * loads each interpreter's libpython into a namespace of its own and has the
 * namespace's libc run the worker thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "worker.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interpkit.h"

/* The base namespace's __ctype_init (GLIBC_PRIVATE, like the namespace's). */
static void (*ik_base_ctype_init)(void);

/* docs/facts.md fact 2, the other way round: the namespace's libc created the
 * worker thread and set up its own per-thread ctype tables; the base libc,
 * whose code (the worker core) also runs there, did not. */
static void
ik_namespace_thread_setup(void)
{
    if (ik_base_ctype_init != NULL) {
        ik_base_ctype_init();
    }
}

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

struct ik_runtime {
    int count;
    ik_worker *workers;
};

/* The namespace libc's own thread functions: the worker thread is created and
 * joined by the libc whose malloc and pthread keys its interpreter uses (see
 * ik_runtime_start and native/README.md, "Teardown"). */
static int
ik_load_namespace_libc(ik_worker *w, ik_error *err)
{
    void *create = dlsym(w->handle, "pthread_create");
    void *join = dlsym(w->handle, "pthread_join");
    if (create == NULL || join == NULL) {
        ik_set_error(err, IK_ERR_SYMBOL, w->index,
                     "cannot start interpreter %d (symbol %s not found in its "
                     "namespace)", w->index, create ? "pthread_join" : "pthread_create");
        return -1;
    }
    memcpy(&w->create_thread, &create, sizeof(void *));
    memcpy(&w->join_thread, &join, sizeof(void *));
    void *exit_handlers = dlsym(w->handle, "__cxa_finalize");
    memcpy(&w->run_exit_handlers, &exit_handlers, sizeof(void *));
    w->thread_setup = ik_namespace_thread_setup;
    return ik_worker_load_api(w, "namespace", err);
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

int
ik_runtime_stop(ik_runtime *rt, int index, double timeout, ik_error *err)
{
    ik_worker *w = ik_get_worker(rt, index, err);
    return w ? ik_worker_end(w, timeout, 0, err) : IK_ERR_ARGUMENT;
}

int
ik_runtime_retire(ik_runtime *rt, int index, double timeout, ik_error *err)
{
    ik_worker *w = ik_get_worker(rt, index, err);
    return w ? ik_worker_end(w, timeout, 1, err) : IK_ERR_ARGUMENT;
}

int
ik_runtime_teardown(ik_runtime *rt, int index, ik_teardown *out)
{
    ik_worker *w = ik_get_worker(rt, index, NULL);
    if (w == NULL || out == NULL) {
        return IK_ERR_ARGUMENT;
    }
    ik_worker_teardown(w, out);
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
        ik_worker_request_stop(&rt->workers[i]);
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
        ik_worker_release(w);
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
        if (ik_worker_setup(&rt->workers[i], i, opts->executable, opts->bootstrap) < 0) {
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
        if (ik_load_namespace_libc(w, err) < 0) {
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
        if (ik_worker_spawn(w, err) != IK_OK) {
            goto error;
        }
    }
    /* Interpreters initialize in parallel; wait for all of them. */
    for (int i = 0; i < rt->count; i++) {
        ik_worker *w = &rt->workers[i];
        ik_worker_state state = ik_worker_wait_ready(w, opts->start_timeout);
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
    return ik_worker_alive(w);
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
    return ik_worker_submit(w, request, request_len, timeout, response,
                            response_len, err);
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
