/* The kernel's round trip, without Python: two processes bounce SIGUSR1, taking it with
 * sigtimedwait (polling, zero timeout) or sigwaitinfo (blocking), the calls minitalk uses.
 * Usage: pingpong ROUNDS poll|block; prints round trips per second. Built by bench/bench.py. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void bounce(pid_t peer, long rounds, int poll, int first, const sigset_t *set)
{
    const struct timespec zero = {0, 0};
    if (first)
        kill(peer, SIGUSR1);
    for (long i = 0; i < rounds; i++) {
        if (poll)
            while (sigtimedwait(set, NULL, &zero) < 0)
                ;
        else
            sigwaitinfo(set, NULL);
        if (first && i == rounds - 1)
            break;
        kill(peer, SIGUSR1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long rounds = atol(argv[1]);
    int poll = strcmp(argv[2], "poll") == 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        bounce(parent, rounds, poll, 0, &set);
        _exit(0);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    bounce(child, rounds, poll, 1, &set);
    clock_gettime(CLOCK_MONOTONIC, &b);
    waitpid(child, NULL, 0);
    double seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("%.0f\n", (double)rounds / seconds);
    return 0;
}
