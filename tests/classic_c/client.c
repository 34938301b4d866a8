/* A plain minitalk client, as the exercise's usual patterns: each byte MSB first, SIGUSR1 = 0,
 * then a NUL byte. "wait" waits for the server's answer to each bit (blocking the answer signal
 * first, so it cannot arrive before the wait); "sleep" sleeps between bits and catches nothing.
 * It prints "started" once its first byte is through.
 * Usage: client PID wait|sleep TEXT [GAP_US]   (sleep: GAP_US between bits, default 500) */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void ignore_answer(int signum) { (void)signum; }

int main(int argc, char **argv)
{
    sigset_t answer, old;
    struct timespec gap = {0, 500000};
    int waits, bit;
    pid_t server;
    size_t i, size;
    const unsigned char *text;

    if (argc != 4 && argc != 5)
        return 2;
    if (argc == 5)
        gap.tv_nsec = atol(argv[4]) * 1000L;
    server = (pid_t)atoi(argv[1]);
    if (server <= 1)
        return 2;
    waits = strcmp(argv[2], "wait") == 0;
    text = (const unsigned char *)argv[3];
    size = strlen(argv[3]) + 1; /* the NUL too */
    sigemptyset(&answer);
    sigaddset(&answer, SIGUSR1);
    if (waits) {
        signal(SIGUSR1, ignore_answer);
        sigprocmask(SIG_BLOCK, &answer, &old);
    }
    for (i = 0; i < size; i++) {
        if (i == 1) { /* one byte is through: say so, for tests that start a second client */
            fputs("started\n", stdout);
            fflush(stdout);
        }
        for (bit = 7; bit >= 0; bit--) {
            if (kill(server, (text[i] >> bit) & 1 ? SIGUSR2 : SIGUSR1) != 0)
                return 1;
            if (waits) {
                int got;
                sigwait(&answer, &got);
            } else {
                nanosleep(&gap, NULL);
            }
        }
    }
    return 0;
}
