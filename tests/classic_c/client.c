/* A plain minitalk client in the ways real ones are written: each byte MSB first, SIGUSR1 = 0,
 * then a NUL byte. It prints "started" once its first byte is through, and exits 0 once it has
 * sent everything (and, for "end", once the server's end signal came).
 *
 * Usage: client PID MODE TEXT [ARG]
 *   wait       waits for the server's answer to each bit with sigwait (SIGUSR1 blocked first,
 *              a handler installed: the common "handshake" client); ARG "lsb" sends each
 *              byte least significant bit first, "inverted" sends SIGUSR2 for 0
 *   early      like wait, but exits at once after its last bit, without waiting for its
 *              answer (a common bug: that answer then goes to a PID that may be reused)
 *   sleep      sleeps ARG µs between bits (default 500) and catches nothing: any signal kills it
 *   timedwait  blocks both signals, catches nothing, and takes each answer with sigtimedwait;
 *              gives up (exit 3) after ARG ms without one (default 1000), as some give up
 *              after 10 ms
 *   end        catches both signals (SA_SIGINFO, counting only the server's), waits for an
 *              answer to each bit with sigsuspend, and after the last bit waits for the
 *              server's end signal: SIGUSR2 (ARG "usr2", the default: in place of the last
 *              answer, just before or just after it), or a second SIGUSR1 after the last
 *              answer (ARG "again"); exit 3 if none comes within 2 s
 *   thread     like sleep (ARG µs), but with a second thread: the main thread blocks both
 *              signals, the other blocks nothing, so a signal to the process kills it
 *   newthread  like thread, but the second thread blocks every signal until the last bit is
 *              sent, as glibc's pthread_create leaves a new thread until it has started, then
 *              unblocks them all: a signal answered meanwhile kills it then. It exits 0 once
 *              that thread has unblocked them (a pending signal would have killed it by then)
 *   allblocked like sleep (ARG µs), one thread, catching nothing, with every signal blocked
 *              while it sends (as glibc's pthread_create and posix_spawn leave the calling
 *              thread for a moment), then unblocked: a signal answered meanwhile kills it then */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2;
static pid_t server;

static void ignore_answer(int signum) { (void)signum; }

static void count_answer(int signum, siginfo_t *info, void *context)
{
    (void)context;
    if (info->si_pid != server)
        return;
    if (signum == SIGUSR1)
        usr1++;
    else
        usr2++;
}

static void *idle_thread(void *unused)
{
    (void)unused;
    for (;;)
        pause();
    return NULL;
}

static volatile int new_thread_ready, all_sent, new_thread_unblocked;

static void *new_thread(void *unused)
{
    struct timespec tick = {0, 1000000};
    sigset_t all, none;
    (void)unused;
    sigfillset(&all);
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    __atomic_store_n(&new_thread_ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&all_sent, __ATOMIC_SEQ_CST))
        nanosleep(&tick, NULL);
    pthread_sigmask(SIG_SETMASK, &none, NULL); /* a pending SIGUSR1/2 kills the process here */
    __atomic_store_n(&new_thread_unblocked, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
    return NULL;
}

static void say_started(size_t i)
{
    if (i == 1) { /* one byte is through: for tests that start a second client */
        fputs("started\n", stdout);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    sigset_t answer, both, none;
    struct timespec gap = {0, 500000};
    struct sigaction action;
    long giveup_ms = 1000;
    int again = 0, bit, got, answers = 0, lsb = 0, inverted = 0, early = 0, one;
    const char *mode;
    size_t i, size;
    const unsigned char *text;

    if (argc != 4 && argc != 5)
        return 2;
    server = (pid_t)atoi(argv[1]);
    if (server <= 1)
        return 2;
    mode = argv[2];
    text = (const unsigned char *)argv[3];
    size = strlen(argv[3]) + 1; /* the NUL too */
    if (argc == 5 && (strcmp(mode, "sleep") == 0 || strcmp(mode, "thread") == 0 ||
                      strcmp(mode, "newthread") == 0 || strcmp(mode, "allblocked") == 0))
        gap.tv_nsec = atol(argv[4]) * 1000L;
    if (argc == 5 && strcmp(mode, "timedwait") == 0)
        giveup_ms = atol(argv[4]);
    if (argc == 5 && strcmp(mode, "end") == 0)
        again = strcmp(argv[4], "again") == 0;
    if (argc == 5 && strcmp(mode, "wait") == 0) {
        lsb = strcmp(argv[4], "lsb") == 0;
        inverted = strcmp(argv[4], "inverted") == 0;
    }
    if (strcmp(mode, "early") == 0) {
        early = 1;
        mode = "wait";
    }
    sigemptyset(&none);
    sigemptyset(&answer);
    sigaddset(&answer, SIGUSR1);
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGUSR2);
    if (strcmp(mode, "wait") == 0) {
        signal(SIGUSR1, ignore_answer);
        sigprocmask(SIG_BLOCK, &answer, NULL);
    } else if (strcmp(mode, "timedwait") == 0) {
        sigprocmask(SIG_BLOCK, &both, NULL);
    } else if (strcmp(mode, "end") == 0) {
        memset(&action, 0, sizeof action);
        action.sa_sigaction = count_answer;
        action.sa_flags = SA_SIGINFO;
        action.sa_mask = both;
        sigaction(SIGUSR1, &action, NULL);
        sigaction(SIGUSR2, &action, NULL);
        sigprocmask(SIG_BLOCK, &both, NULL); /* no answer is missed between kill and wait */
    } else if (strcmp(mode, "thread") == 0) {
        pthread_t other;
        if (pthread_create(&other, NULL, idle_thread, NULL) != 0)
            return 1;
        pthread_sigmask(SIG_BLOCK, &both, NULL); /* this thread only */
    } else if (strcmp(mode, "newthread") == 0) {
        struct timespec tick = {0, 1000000};
        pthread_t other;
        if (pthread_create(&other, NULL, new_thread, NULL) != 0)
            return 1;
        while (!__atomic_load_n(&new_thread_ready, __ATOMIC_SEQ_CST))
            nanosleep(&tick, NULL);
        pthread_sigmask(SIG_BLOCK, &both, NULL); /* this thread only */
    } else if (strcmp(mode, "allblocked") == 0) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
    } else if (strcmp(mode, "sleep") != 0) {
        return 2;
    }
    for (i = 0; i < size; i++) {
        say_started(i);
        for (bit = 7; bit >= 0; bit--) {
            one = (text[i] >> (lsb ? 7 - bit : bit)) & 1;
            if (kill(server, one != inverted ? SIGUSR2 : SIGUSR1) != 0)
                return 1;
            if (early && i == size - 1 && bit == 0)
                return 0; /* the bug: gone before the last answer */
            if (strcmp(mode, "wait") == 0) {
                sigwait(&answer, &got);
            } else if (strcmp(mode, "timedwait") == 0) {
                struct timespec limit = {giveup_ms / 1000, (giveup_ms % 1000) * 1000000L};
                siginfo_t info;
                do
                    got = sigtimedwait(&both, &info, &limit);
                while (got > 0 && info.si_pid != server);
                if (got < 0) {
                    fprintf(stderr, "no answer within %ld ms after byte %zu\n", giveup_ms, i);
                    return 3;
                }
            } else if (strcmp(mode, "end") == 0) {
                answers++;
                while (usr1 + usr2 < answers)
                    sigsuspend(&none);
            } else {
                nanosleep(&gap, NULL);
            }
        }
    }
    if (strcmp(mode, "end") == 0) {
        struct timespec tick = {0, 1000000};
        int waited;
        for (waited = 0; waited < 2000; waited++) {
            if (again ? usr1 > answers : usr2 > 0)
                return 0;
            sigprocmask(SIG_UNBLOCK, &both, NULL);
            nanosleep(&tick, NULL);
            sigprocmask(SIG_BLOCK, &both, NULL);
        }
        fprintf(stderr, "no end signal (SIGUSR1 %d, SIGUSR2 %d for %d bits)\n", (int)usr1,
                (int)usr2, answers);
        return 3;
    }
    if (strcmp(mode, "allblocked") == 0)
        sigprocmask(SIG_SETMASK, &none, NULL); /* a pending SIGUSR1/2 kills it here */
    if (strcmp(mode, "newthread") == 0) {
        struct timespec tick = {0, 1000000};
        __atomic_store_n(&all_sent, 1, __ATOMIC_SEQ_CST);
        while (!__atomic_load_n(&new_thread_unblocked, __ATOMIC_SEQ_CST))
            nanosleep(&tick, NULL);
    }
    return 0;
}
