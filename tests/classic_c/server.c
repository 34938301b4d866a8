/* A plain minitalk server, as the exercise's usual pattern: an SA_SIGINFO handler takes each
 * bit (MSB first, SIGUSR1 = 0), answers it with SIGUSR1 to si_pid, and the text is printed
 * when the NUL byte arrives. One sender at a time, like most of them.
 * Usage: server [--no-ack]   (prints "PID <n>" first) */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CAPACITY (1 << 22)
static unsigned char text[CAPACITY];
static volatile sig_atomic_t length, bits, done;
static volatile unsigned char current;
static int answer = 1;

static void on_bit(int signum, siginfo_t *info, void *context)
{
    (void)context;
    current = (unsigned char)(current << 1 | (signum == SIGUSR2));
    if (++bits == 8) {
        if (current == 0)
            done = 1;
        else if (length < CAPACITY)
            text[length++] = current;
        bits = 0;
        current = 0;
    }
    if (answer && info->si_pid > 1)
        kill(info->si_pid, SIGUSR1);
}

int main(int argc, char **argv)
{
    struct sigaction action;
    sigset_t both, old;

    answer = !(argc > 1 && strcmp(argv[1], "--no-ack") == 0);
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_bit;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&both);
    sigaddset(&both, SIGUSR1);
    sigaddset(&both, SIGUSR2);
    action.sa_mask = both;
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGUSR2, &action, NULL);
    printf("PID %d\n", getpid());
    fflush(stdout);
    sigprocmask(SIG_BLOCK, &both, &old);
    for (;;) {
        while (!done)
            sigsuspend(&old);
        fwrite(text, 1, (size_t)length, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        length = 0;
        done = 0;
    }
}
