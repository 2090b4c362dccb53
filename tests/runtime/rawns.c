/* rawns.c -- a bare dlmopen host WITHOUT the runtime's workarounds, for reproducing the
 * failures of docs/facts.md (facts 2, 4, 7) in a child process.  Built by the tests with gcc.
 *
 *   rawns LIBPYTHON ctype   0|1   new thread enters a namespace without/with __ctype_init
 *   rawns LIBPYTHON tss     0|1   one thread enters two interpreters (0) / one each (1),
 *                                 then calls PyGILState_Ensure in the last
 *   rawns LIBPYTHON teardown 0|1  thread ends holding the GIL (0) / after SaveThread (1),
 *                                 with the code of $RAWNS_SOURCE run first (e.g. import torch)
 *   rawns LIBPYTHON tsd     0|1|2 a thread sets 40 pthread keys of the namespace's libc
 *                                 (keys >= 32 make that libc calloc a second-level block in
 *                                 the thread descriptor) and ends; created by the base libc
 *                                 (0) or by the namespace's libc (1); or (2) 8 keys only (no
 *                                 second-level block), base-created, while the base libc has
 *                                 keys with destructors of its own, as a host with torch has
 *
 * Exit status 0 means the scenario completed; a crash or hang is the reproduction.
 * PYTHONHOME must point at the Python's prefix (no path configuration is done here).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct api {
    void *handle;
    void (*ctype_init)(void);
    void (*Py_InitializeEx)(int);
    int (*PyRun_SimpleString)(const char *);
    void *(*PyEval_SaveThread)(void);
    void (*PyEval_RestoreThread)(void *);
    int (*Py_FinalizeEx)(void);
    int (*PyGILState_Ensure)(void);
    void (*PyGILState_Release)(int);
} api;

static const char *libpython;
static int flag;

/* tsd: the namespace's own key functions, and what the base libc's destructors saw. */
#define TSD_KEYS 40
static int (*ns_key_create)(pthread_key_t *, void (*)(void *));
static int (*ns_setspecific)(pthread_key_t, const void *);
static int (*ns_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static int (*ns_pthread_join)(pthread_t, void **);
static volatile int base_destructor_calls;
static char ns_value[TSD_KEYS];     /* the namespace thread's values point in here */

static void *
need(void *handle, const char *name)
{
    void *p = dlsym(handle, name);
    if (p == NULL) {
        fprintf(stderr, "rawns: %s missing\n", name);
        exit(3);
    }
    return p;
}

static void
load(api *a)
{
    a->handle = dlmopen(LM_ID_NEWLM, libpython, RTLD_NOW | RTLD_LOCAL);
    if (a->handle == NULL) {
        fprintf(stderr, "rawns: %s\n", dlerror());
        exit(3);
    }
    *(void **)&a->ctype_init = need(a->handle, "__ctype_init");
    *(void **)&a->Py_InitializeEx = need(a->handle, "Py_InitializeEx");
    *(void **)&a->PyRun_SimpleString = need(a->handle, "PyRun_SimpleString");
    *(void **)&a->PyEval_SaveThread = need(a->handle, "PyEval_SaveThread");
    *(void **)&a->PyEval_RestoreThread = need(a->handle, "PyEval_RestoreThread");
    *(void **)&a->Py_FinalizeEx = need(a->handle, "Py_FinalizeEx");
    *(void **)&a->PyGILState_Ensure = need(a->handle, "PyGILState_Ensure");
    *(void **)&a->PyGILState_Release = need(a->handle, "PyGILState_Release");
}

static void
run(api *a, const char *code)
{
    if (a->PyRun_SimpleString(code) != 0) {
        fprintf(stderr, "rawns: code failed\n");
        exit(4);
    }
}

/* Tokenizer and str.isalpha-style work: both use the ctype tables. */
static const char *WORK =
    "src = 'def f(a_b, c):\\n    return [x for x in a_b if x.isalpha()]\\n'\n"
    "exec(compile(src, 'w', 'exec'))\n"
    "assert f('ab1c', 0) == ['a', 'b', 'c']\n";

static void *
ctype_thread(void *arg)
{
    api *a = arg;
    if (flag) {
        a->ctype_init();
    }
    a->Py_InitializeEx(0);
    run(a, WORK);
    a->Py_FinalizeEx();
    return NULL;
}

static api tss_a, tss_b;

static void *
tss_enter_both(void *arg)
{
    (void)arg;
    tss_a.ctype_init();
    tss_a.Py_InitializeEx(0);          /* this thread now holds A's GIL */
    tss_b.ctype_init();
    tss_b.Py_InitializeEx(0);
    /* B's autoTSSkey has the same number as A's, and A already stored its
     * thread state there, so B's PyGILState_Ensure (what extension callbacks
     * use) picks up A's thread state and waits for A's GIL -- held by this
     * very thread: a deadlock in take_gil. */
    int state = tss_b.PyGILState_Ensure();
    run(&tss_b, "x = 1\n");
    tss_b.PyGILState_Release(state);
    return NULL;
}

static void *
tss_enter_one(void *arg)
{
    api *a = arg;
    a->ctype_init();
    a->Py_InitializeEx(0);
    int state = a->PyGILState_Ensure();
    run(a, "x = 1\n");
    a->PyGILState_Release(state);
    return NULL;
}

static void *
teardown_thread(void *arg)
{
    api *a = arg;
    a->ctype_init();
    a->Py_InitializeEx(0);
    const char *source = getenv("RAWNS_SOURCE");
    if (source != NULL) {
        run(a, source);
    }
    if (flag) {
        a->PyEval_SaveThread();
    }
    return NULL;       /* flag 0: this thread ends holding the interpreter's GIL */
}

static void
base_destructor(void *value)
{
    if ((char *)value >= ns_value && (char *)value < ns_value + TSD_KEYS) {
        base_destructor_calls++;
    }
}

static void *
tsd_thread(void *arg)
{
    int count = *(int *)arg;
    for (int k = 0; k < count; k++) {
        pthread_key_t key;
        if (ns_key_create(&key, NULL) != 0 || ns_setspecific(key, &ns_value[k]) != 0) {
            fprintf(stderr, "rawns: namespace key %d failed\n", k);
            exit(4);
        }
    }
    return NULL;       /* thread exit: some libc's __nptl_deallocate_tsd frees the blocks */
}

static void
tsd(void)
{
    static api a;
    load(&a);
    *(void **)&ns_key_create = need(a.handle, "pthread_key_create");
    *(void **)&ns_setspecific = need(a.handle, "pthread_setspecific");
    *(void **)&ns_pthread_create = need(a.handle, "pthread_create");
    *(void **)&ns_pthread_join = need(a.handle, "pthread_join");
    if (flag == 2) {
        for (int k = 0; k < TSD_KEYS; k++) {   /* the base's keys get the same numbers */
            pthread_key_t key;
            pthread_key_create(&key, base_destructor);
        }
    }
    static int count;
    count = flag == 2 ? 8 : TSD_KEYS;
    pthread_t t;
    if (flag == 1) {
        ns_pthread_create(&t, NULL, tsd_thread, &count);
        ns_pthread_join(t, NULL);
    }
    else {
        pthread_create(&t, NULL, tsd_thread, &count);
        pthread_join(t, NULL);
    }
    if (base_destructor_calls) {
        printf("rawns: base destructors ran on %d namespace values\n", base_destructor_calls);
        fflush(stdout);
        exit(5);
    }
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: rawns LIBPYTHON ctype|tss|teardown|tsd 0|1|2\n");
        return 2;
    }
    libpython = argv[1];
    flag = atoi(argv[3]);
    pthread_t t1, t2;
    if (strcmp(argv[2], "ctype") == 0) {
        static api a;
        load(&a);
        pthread_create(&t1, NULL, ctype_thread, &a);
        pthread_join(t1, NULL);
    }
    else if (strcmp(argv[2], "tss") == 0) {
        load(&tss_a);
        load(&tss_b);
        if (flag) {
            pthread_create(&t1, NULL, tss_enter_one, &tss_a);
            pthread_create(&t2, NULL, tss_enter_one, &tss_b);
            pthread_join(t1, NULL);
            pthread_join(t2, NULL);
        }
        else {
            pthread_create(&t1, NULL, tss_enter_both, NULL);
            pthread_join(t1, NULL);
        }
    }
    else if (strcmp(argv[2], "teardown") == 0) {
        static api a;
        load(&a);
        pthread_create(&t1, NULL, teardown_thread, &a);
        pthread_join(t1, NULL);
    }
    else if (strcmp(argv[2], "tsd") == 0) {
        tsd();
    }
    else {
        return 2;
    }
    puts("rawns: done");
    fflush(stdout);
    return 0;
}
