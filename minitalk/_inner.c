/* minitalk._inner: the compiled inner loop, transport.SignalWaiter's two tight loops in C.
 *
 * Optional. `pip install .` builds it when a C compiler is present (setup.py marks the
 * extension optional: a failed build only skips it); transport.py uses its own pure-Python
 * loops without it, or when MINITALK_PURE_PYTHON=1. Both loops have the same contract as
 * the Python ones, and the same trust rules inside: a signal counts only if the kernel
 * stamped its sender (si_code SI_USER), it is the expected data signal and it comes from the
 * peer's PID. Anything else (a stop signal, a forged or stray signal, another sender) ends the
 * run and is handed back, unread, as (signo, code, pid), for transport to classify and the
 * machine to judge. Polls only (sigtimedwait with a zero timeout), yielding the CPU after
 * each empty poll when the caller says the machine is crowded; a run whose answer does not
 * come within `polls` polls ends, and the caller waits with its deadlines.
 *
 * The GIL is released for the whole run. A signal with a Python handler (SIGINT at a client)
 * is acted on when the run ends, at a frame's end at the latest (tens of milliseconds): a
 * poll with a zero timeout returns EAGAIN, never EINTR, so nothing ends a run sooner.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424 /* the same number on every architecture */
#endif

#define SIGNALS_SI_USER 0

static const struct timespec NO_WAIT = {0, 0};

enum polled { POLLED_SIGNAL, POLLED_NOTHING };

/* Poll up to `polls` times for one of `waited`. */
static enum polled poll_one(const sigset_t *waited, long polls, int crowded, siginfo_t *info)
{
    for (long i = 0; i < polls; i++) {
        if (sigtimedwait(waited, info, &NO_WAIT) > 0)
            return POLLED_SIGNAL;
        if (crowded)
            sched_yield();
    }
    return POLLED_NOTHING;
}

static int send_to(int pidfd, int signo)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0) == 0 ? 0 : errno;
}

/* The signals a waiter takes, from a Python iterable of signal numbers. */
static int waited_set(PyObject *numbers, sigset_t *set)
{
    PyObject *iterator = PyObject_GetIter(numbers), *item;
    if (iterator == NULL)
        return -1;
    sigemptyset(set);
    while ((item = PyIter_Next(iterator)) != NULL) {
        long signo = PyLong_AsLong(item);
        Py_DECREF(item);
        if (signo == -1 && PyErr_Occurred())
            break;
        if (signo < 1 || signo >= NSIG || sigaddset(set, (int)signo) != 0) {
            PyErr_Format(PyExc_ValueError, "not a signal number: %ld", signo);
            break;
        }
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

/* None, or what ended a run: (signo, code, pid), unread. */
static PyObject *broken_by(int broke, const siginfo_t *info)
{
    if (!broke)
        Py_RETURN_NONE;
    return Py_BuildValue("(iii)", info->si_signo, info->si_code, (int)info->si_pid);
}

PyDoc_STRVAR(bounce_doc,
"bounce(pidfd, pid, symbols, expect, polls, crowded, waited) -> (sent, broken, errno)\n\n"
"Send each of ``symbols`` (bytes of 0 and 1: 0 as SIGUSR1, 1 as SIGUSR2) through pidfd,\n"
"each once the signal ``expect`` came from ``pid`` (the first: answering the one already\n"
"out). ``broken``: None, or the unexpected signal that ended the run, as (signo, code, pid);\n"
"``errno``: 0, or the error of the send that failed (its answer was taken).");

static PyObject *bounce(PyObject *module, PyObject *args)
{
    int pidfd, pid, expect, crowded;
    long polls;
    Py_buffer symbols;
    PyObject *numbers;
    sigset_t waited;
    if (!PyArg_ParseTuple(args, "iiy*ilpO", &pidfd, &pid, &symbols, &expect, &polls,
                          &crowded, &numbers))
        return NULL;
    (void)module;
    if (waited_set(numbers, &waited) < 0) {
        PyBuffer_Release(&symbols);
        return NULL;
    }
    const unsigned char *wanted = symbols.buf;
    Py_ssize_t sent = 0, total = symbols.len;
    int broke = 0, error = 0;
    siginfo_t info;
    Py_BEGIN_ALLOW_THREADS
    for (; sent < total; sent++) {
        if (poll_one(&waited, polls, crowded, &info) != POLLED_SIGNAL)
            break;
        if (info.si_signo != expect || info.si_pid != pid || info.si_code != SIGNALS_SI_USER) {
            broke = 1;
            break;
        }
        error = send_to(pidfd, wanted[sent] ? SIGUSR2 : SIGUSR1);
        if (error)
            break;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&symbols);
    PyObject *broken = broken_by(broke, &info);
    if (broken == NULL)
        return NULL;
    return Py_BuildValue("(nNi)", sent, broken, error);
}

PyDoc_STRVAR(collect_doc,
"collect(pidfd, pid, count, answer, polls, crowded, waited) -> (symbols, broken)\n\n"
"Take up to ``count`` data signals from ``pid``, answering each at once with the signal\n"
"``answer`` through pidfd. ``symbols``: bytes of 0 (SIGUSR1) and 1 (SIGUSR2) taken;\n"
"``broken``: None, or the unexpected signal that ended the run, as (signo, code, pid). A\n"
"failed answer ends the run (the peer exited or changed its user: the caller finds out).");

static PyObject *collect(PyObject *module, PyObject *args)
{
    int pidfd, pid, answer, crowded;
    long polls;
    Py_ssize_t count;
    PyObject *numbers;
    sigset_t waited;
    if (!PyArg_ParseTuple(args, "iinilpO", &pidfd, &pid, &count, &answer, &polls, &crowded,
                          &numbers))
        return NULL;
    (void)module;
    if (count < 0)
        count = 0;
    if (waited_set(numbers, &waited) < 0)
        return NULL;
    PyObject *taken = PyBytes_FromStringAndSize(NULL, count);
    if (taken == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(taken);
    Py_ssize_t got = 0;
    int broke = 0;
    siginfo_t info;
    Py_BEGIN_ALLOW_THREADS
    for (; got < count; got++) {
        if (poll_one(&waited, polls, crowded, &info) != POLLED_SIGNAL)
            break;
        int symbol = info.si_signo == SIGUSR1 ? 0 : info.si_signo == SIGUSR2 ? 1 : -1;
        if (symbol < 0 || info.si_pid != pid || info.si_code != SIGNALS_SI_USER) {
            broke = 1;
            break;
        }
        out[got] = (unsigned char)symbol;
        if (send_to(pidfd, answer) != 0) {
            got++;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&taken, got) < 0)
        return NULL;
    PyObject *broken = broken_by(broke, &info);
    if (broken == NULL) {
        Py_DECREF(taken);
        return NULL;
    }
    return Py_BuildValue("(NN)", taken, broken);
}

/* The check a classic server makes before each answer (procview.StatFile.handles), on the
 * client's /proc/PID/stat kept open: 1 if the process is alive, not exiting, and ignores or
 * catches `signo`, or has one thread and it blocks `signo`; 0 otherwise, also for a process
 * of several threads that catches nothing (the Python check reads each thread's mask). */
#define PF_EXITING 0x4
/* /proc stat field 32 shows signals 1-31: all of them, but SIGKILL and SIGSTOP */
#define ALL_BLOCKED (0x7fffffffULL & ~(1ULL << (SIGKILL - 1)) & ~(1ULL << (SIGSTOP - 1)))
static int stat_allows(int statfd, int signo)
{
    char text[4096];
    ssize_t size = pread(statfd, text, sizeof text - 1, 0);
    if (size <= 0)
        return 0;
    text[size] = '\0';
    char *at = strrchr(text, ')');
    if (at == NULL)
        return 0;
    /* fields 3 (state) onwards, split on spaces: field N is fields[N - 3] */
    unsigned long long field[32];
    char state = 0;
    int count = 0;
    at++;
    while (count < 32) {
        while (*at == ' ')
            at++;
        if (*at == '\0' || *at == '\n')
            break;
        if (count == 0) {
            state = *at;
            field[0] = 0;
            while (*at && *at != ' ')
                at++;
        } else {
            char *end;
            errno = 0;
            field[count] = strtoull(at, &end, 10);
            if (end == at) /* not a number (none of the fields read here) */
                field[count] = 0;
            at = end;
            while (*at && *at != ' ')
                at++;
        }
        count++;
    }
    if (count < 32 || state == 'Z' || state == 'X' || (field[6] & PF_EXITING))
        return 0;
    unsigned long long bit = 1ULL << (signo - 1);
    if ((field[30] | field[31]) & bit) /* ignored or caught: process-wide */
        return 1;
    /* its one thread blocks it, and not as a thread that blocks every signal for a moment
     * (around pthread_create's or posix_spawn's clone: procview._blocks) */
    return field[17] == 1 && (field[29] & bit) && (field[29] & ALL_BLOCKED) != ALL_BLOCKED;
}

static double now_monotonic(void)
{
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    return (double)at.tv_sec + (double)at.tv_nsec / 1e9;
}

PyDoc_STRVAR(classic_collect_doc,
"classic_collect(pidfd, pid, statfd, count, answer, zero, in_byte, has_one, polls, crowded,\n"
"                waited) -> (symbols, times, answered, broken, awake)\n\n"
"A classic server's tight loop: take up to ``count`` data signals from ``pid`` and answer\n"
"each with the signal ``answer`` through pidfd, once ``stat_allows`` (its /proc/PID/stat,\n"
"open as statfd) says that cannot kill it. A signal is taken but not answered, ending the\n"
"run, when the check says no, when another signal of ``waited`` is pending (it is taken\n"
"first, as the server's step does), or when it completes a byte of eight ``zero`` symbols\n"
"(a NUL: the message's end, whose answer waits until it is printed); ``in_byte`` and\n"
"``has_one`` say where the bytes stand (symbols of the current byte so far, and whether one\n"
"was not ``zero``). ``symbols``: bytes of 0 and 1; ``times``: the monotonic time each was\n"
"taken, as doubles; ``answered``: how many were answered (all, or all but the last);\n"
"``broken``: None, or the unexpected signal that ended the run, as (signo, code, pid);\n"
"``awake``: the last of ``times`` at which no SIGCONT was pending (0.0: none).");

static PyObject *classic_collect(PyObject *module, PyObject *args)
{
    int pidfd, pid, statfd, answer, zero, in_byte, has_one, crowded;
    long polls;
    Py_ssize_t count;
    PyObject *numbers;
    sigset_t waited;
    if (!PyArg_ParseTuple(args, "iiiniiiplpO", &pidfd, &pid, &statfd, &count, &answer, &zero,
                          &in_byte, &has_one, &polls, &crowded, &numbers))
        return NULL;
    (void)module;
    if (count < 0)
        count = 0;
    if (in_byte < 0 || in_byte > 7 || (zero != 0 && zero != 1) ||
        (answer != SIGUSR1 && answer != SIGUSR2)) {
        PyErr_SetString(PyExc_ValueError, "in_byte 0-7, zero 0 or 1, answer SIGUSR1 or SIGUSR2");
        return NULL;
    }
    if (waited_set(numbers, &waited) < 0)
        return NULL;
    PyObject *taken = PyBytes_FromStringAndSize(NULL, count);
    PyObject *times = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(double));
    if (taken == NULL || times == NULL) {
        Py_XDECREF(taken);
        Py_XDECREF(times);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(taken);
    double *at = (double *)PyBytes_AS_STRING(times);
    Py_ssize_t got = 0, answered = 0;
    int broke = 0;
    double awake = 0.0;
    siginfo_t info;
    sigset_t pending, others;
    Py_BEGIN_ALLOW_THREADS
    while (got < count) {
        if (poll_one(&waited, polls, crowded, &info) != POLLED_SIGNAL)
            break;
        int symbol = info.si_signo == SIGUSR1 ? 0 : info.si_signo == SIGUSR2 ? 1 : -1;
        if (symbol < 0 || info.si_pid != pid || info.si_code != SIGNALS_SI_USER) {
            broke = 1;
            break;
        }
        at[got] = now_monotonic();
        out[got++] = (unsigned char)symbol;
        has_one |= symbol != zero;
        if (++in_byte == 8) {
            if (!has_one) /* a NUL: the message ends here */
                break;
            in_byte = has_one = 0;
        }
        if (sigpending(&pending) != 0)
            break;
        if (!sigismember(&pending, SIGCONT))
            awake = at[got - 1];
        sigandset(&others, &waited, &pending);
        if (!sigisemptyset(&others)) /* taken first, as the server's step takes what is pending */
            break;
        if (!stat_allows(statfd, answer) || send_to(pidfd, answer) != 0)
            break;
        answered++;
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&taken, got) < 0) {
        Py_DECREF(times);
        return NULL;
    }
    if (_PyBytes_Resize(&times, got * (Py_ssize_t)sizeof(double)) < 0) {
        Py_DECREF(taken);
        return NULL;
    }
    PyObject *broken = broken_by(broke, &info);
    if (broken == NULL) {
        Py_DECREF(taken);
        Py_DECREF(times);
        return NULL;
    }
    return Py_BuildValue("(NNnNd)", taken, times, answered, broken, awake);
}

static PyMethodDef methods[] = {
    {"bounce", bounce, METH_VARARGS, bounce_doc},
    {"collect", collect, METH_VARARGS, collect_doc},
    {"classic_collect", classic_collect, METH_VARARGS, classic_collect_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "minitalk._inner",
    .m_doc = "The compiled inner loop of minitalk.transport (optional; see transport.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__inner(void)
{
    return PyModuleDef_Init(&module);
}
