/* A plain minitalk server, as the exercise's usual pattern: an SA_SIGINFO handler takes each
 * bit (MSB first, SIGUSR1 = 0), answers it with SIGUSR1 to si_pid, and the text is printed
 * when the NUL byte arrives. One sender at a time, like most of them.
 * Usage: server [--no-ack] [--end instead|before|after|again] [--delay-us N]
 *   --end      ends each message with an end signal, as many do: SIGUSR2 in place of the last
 *              bit's answer (instead), just before it (before) or just after it (after), or
 *              one more SIGUSR1 600 µs after it (again)
 *   --delay-us waits N µs in the handler before each answer, as many do
 * (prints "PID <n>" first) */
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
static int answer = 1, delay_us;
static const char *end = "";

static void on_bit(int signum, siginfo_t *info, void *context)
{
    int last = 0;

    (void)context;
    current = (unsigned char)(current << 1 | (signum == SIGUSR2));
    if (++bits == 8) {
        if (current == 0)
            done = last = 1;
        else if (length < CAPACITY)
            text[length++] = current;
        bits = 0;
        current = 0;
    }
    if (!answer || info->si_pid <= 1)
        return;
    if (delay_us)
        usleep((useconds_t)delay_us);
    if (last && strcmp(end, "instead") == 0) {
        kill(info->si_pid, SIGUSR2);
        return;
    }
    if (last && strcmp(end, "before") == 0)
        kill(info->si_pid, SIGUSR2);
    kill(info->si_pid, SIGUSR1);
    if (last && strcmp(end, "after") == 0)
        kill(info->si_pid, SIGUSR2);
    if (last && strcmp(end, "again") == 0) {
        usleep(600);
        kill(info->si_pid, SIGUSR1);
    }
}

int main(int argc, char **argv)
{
    struct sigaction action;
    sigset_t both, old;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-ack") == 0)
            answer = 0;
        else if (strcmp(argv[i], "--end") == 0 && i + 1 < argc)
            end = argv[++i];
        else if (strcmp(argv[i], "--delay-us") == 0 && i + 1 < argc)
            delay_us = atoi(argv[++i]);
        else
            return 2;
    }
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
