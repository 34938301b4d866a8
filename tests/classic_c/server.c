/* A plain minitalk server, as the exercise's usual pattern: an SA_SIGINFO handler takes each
 * bit (MSB first, SIGUSR1 = 0), answers it with SIGUSR1 to si_pid, and the text is printed
 * when the NUL byte arrives. One sender at a time, like most of them.
 * Usage: server [--no-ack] [--end instead|before|after|again] [--delay-us N] [--lsb]
 *               [--inverted] [--lossy] [--bytewise]
 *   --lsb      takes each byte least significant bit first
 *   --inverted takes SIGUSR2 as 0
 *   --lossy    is still busy for 300 µs after each answer (as one whose main loop reads the
 *              bit from one shared variable, or prints slowly): a bit that comes sooner is
 *              answered but lost, as when the handler overwrites the bit not yet read (a
 *              common bug). Whether a bit is lost depends only on the time since the answer,
 *              so a sender that pauses 500 µs after each answer never loses one
 *   --bytewise prints each byte as it arrives, and nothing at the end: no newline
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
#include <time.h>
#include <unistd.h>

#define CAPACITY (1 << 22)
static unsigned char text[CAPACITY];
static volatile sig_atomic_t length, bits, done;
static volatile unsigned char current;
static int answer = 1, delay_us, lsb, inverted, lossy, bytewise;
static const char *end = "";
static struct timespec answered_at; /* --lossy: when the last answer went */

static void take_bit(int one)
{
    if (lsb)
        current = (unsigned char)(current >> 1 | (one ? 0x80 : 0));
    else
        current = (unsigned char)(current << 1 | one);
}

/* --lossy: whether this bit came within 300 µs of the last answer, while the server is (in
 * this model) still busy with the last bit: it is lost. The time is read just before each
 * answer goes, so a sender that waits after the answer has come is measured from no later
 * than that: its pause alone decides, not how this process was scheduled */
static int too_soon(void)
{
    struct timespec now;
    long elapsed_us;

    if (!lossy || answered_at.tv_sec == 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    elapsed_us = (now.tv_sec - answered_at.tv_sec) * 1000000L +
                 (now.tv_nsec - answered_at.tv_nsec) / 1000L;
    return elapsed_us < 300;
}

static void on_bit(int signum, siginfo_t *info, void *context)
{
    int last = 0;

    (void)context;
    if (too_soon()) { /* answered, but not taken: the sender goes on, one bit short */
        clock_gettime(CLOCK_MONOTONIC, &answered_at); /* before the answer: see too_soon */
        if (info->si_pid > 1)
            kill(info->si_pid, SIGUSR1);
        return;
    }
    take_bit((signum == SIGUSR2) != inverted);
    if (++bits == 8) {
        if (current == 0)
            done = last = 1;
        else if (bytewise)
            write(1, (const void *)&current, 1);
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
    if (lossy)
        clock_gettime(CLOCK_MONOTONIC, &answered_at);
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
        else if (strcmp(argv[i], "--lsb") == 0)
            lsb = 1;
        else if (strcmp(argv[i], "--inverted") == 0)
            inverted = 1;
        else if (strcmp(argv[i], "--lossy") == 0)
            lossy = 1;
        else if (strcmp(argv[i], "--bytewise") == 0)
            bytewise = 1;
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
        if (!bytewise) {
            fwrite(text, 1, (size_t)length, stdout);
            fputc('\n', stdout);
            fflush(stdout);
        }
        length = 0;
        done = 0;
    }
}
