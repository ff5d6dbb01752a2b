/* The echo benchmark's native load generator: the closed loop of echo.py's
 * Python client, in C, so that the fastest servers are measured rather than
 * the client. echo.py is the one to read; this does the same, message for
 * message: each of N connections sends SIZE bytes cut from the same pattern
 * (period 251, message n of connection i starting at (n * 7 + i) % 251),
 * waits for the whole echo, compares it byte for byte and sends the next,
 * for DURATION seconds; then the echoes in flight get 5 s to come back, and
 * each connection sends EOF and expects EOF with no extra byte.
 *
 * epoll_client --port P --size S --connections N --duration D
 * prints "started" when the measured window opens, "stopped" when it closes
 * (the caller reads the server's CPU time at both), then one JSON line:
 * {"messages", "seconds", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_s"},
 * cpu_s being this process's own CPU time during the window. On a broken
 * echo it prints {"error": "..."} and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD 251
#define STEP 7
#define FINISH_GRACE 5.0
#define MAX_CONNECTIONS 1024

struct connection {
    int fd, index, registered_for_write;
    long sent;                    /* messages started */
    size_t received, outgoing;    /* echo bytes in; bytes of the message still to send */
    const unsigned char *message; /* this message, inside the pattern */
    unsigned char *echo;
    double started;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* epoll_wait's timeout, rounded up so that the loop never spins on a zero. */
static int milliseconds(double seconds) { return (int)(seconds * 1000) + 1; }

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

static void fail(int index, const char *what) {
    printf("{\"error\": \"connection %d: %s%s%s\"}\n", index, what, errno ? ": " : "",
           errno ? strerror(errno) : "");
    exit(1);
}

static int epoll;
static size_t size;
static unsigned char *pattern;

static void watch(struct connection *c, int write) {
    struct epoll_event event = {.events = EPOLLIN | (write ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &event) < 0) fail(c->index, "epoll_ctl");
    c->registered_for_write = write;
}

/* Send what the socket takes; wait for writability only while some is left. */
static void send_more(struct connection *c) {
    errno = 0;
    ssize_t n = send(c->fd, c->message + (size - c->outgoing), c->outgoing, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) fail(c->index, "send");
    if (n > 0) c->outgoing -= (size_t)n;
    if (c->outgoing > 0 && !c->registered_for_write) watch(c, 1);
    if (c->outgoing == 0 && c->registered_for_write) watch(c, 0);
}

static void send_next(struct connection *c) {
    c->message = pattern + (c->sent * STEP + c->index) % PERIOD;
    c->outgoing = size;
    c->received = 0;
    c->sent++;
    c->started = now();
    send_more(c);
}

/* Read what has arrived of the echo; 1 once it is complete and identical.
 * Into the rest of this message's buffer only, as echo.py does. */
static int receive(struct connection *c) {
    errno = 0;
    ssize_t n = recv(c->fd, c->echo + c->received, size - c->received, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n < 0) fail(c->index, "recv");
    if (n == 0) fail(c->index, "closed mid-message");
    c->received += (size_t)n;
    if (c->received < size) return 0;
    if (memcmp(c->echo, c->message, size) != 0) fail(c->index, "got different bytes back");
    return 1;
}

static int set_blocking(int fd, int blocking) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank, as echo.py's quantile(): a figure some sample really had. */
static double quantile(const double *sorted, size_t count, double q) {
    double exact = q * (double)count;
    size_t rank = (size_t)exact;
    if ((double)rank < exact) rank++;
    return sorted[rank > 0 ? rank - 1 : 0];
}

int main(int argc, char **argv) {
    int port = 0, concurrency = 10;
    double duration = 1.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0) size = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--connections") == 0) concurrency = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0) duration = atof(argv[i + 1]);
    }
    if (argc % 2 == 0 || port <= 0 || size == 0 || concurrency < 1 ||
        concurrency > MAX_CONNECTIONS || !(duration > 0)) {
        fprintf(stderr, "usage: %s --port P --size BYTES --connections N --duration SECONDS\n",
                argv[0]);
        return 2;
    }
    pattern = malloc(size + PERIOD);
    for (size_t i = 0; i < size + PERIOD; i++) pattern[i] = (unsigned char)(i % PERIOD);
    epoll = epoll_create1(0);
    static struct connection connections[MAX_CONNECTIONS];
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < concurrency; i++) {
        struct connection *c = &connections[i];
        c->index = i;
        c->echo = malloc(size);
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        /* No Nagle: the tail of a message must not wait for a delayed ACK. */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        errno = 0;
        if (connect(c->fd, (struct sockaddr *)&address, sizeof address) < 0) fail(i, "connect");
        if (set_blocking(c->fd, 0) < 0) fail(i, "fcntl");
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, c->fd, &event) < 0) fail(i, "epoll_ctl");
    }
    size_t capacity = 1 << 16, messages = 0;
    double *latencies = malloc(capacity * sizeof *latencies);
    struct epoll_event events[MAX_CONNECTIONS];

    printf("started\n");
    fflush(stdout);
    double cpu = cpu_seconds(), start = now(), deadline = start + duration, t;
    for (int i = 0; i < concurrency; i++) send_next(&connections[i]);
    /* The window: each echo that completes is counted and the next message follows. */
    while ((t = now()) < deadline) {
        int n = epoll_wait(epoll, events, MAX_CONNECTIONS, milliseconds(deadline - t));
        for (int k = 0; k < n; k++) {
            struct connection *c = events[k].data.ptr;
            if (events[k].events & EPOLLOUT) send_more(c);
            if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || !receive(c)) continue;
            if (messages == capacity) {
                latencies = realloc(latencies, (capacity *= 2) * sizeof *latencies);
                if (latencies == NULL) fail(c->index, "realloc");
            }
            latencies[messages++] = now() - c->started;
            send_next(c);
        }
    }
    double elapsed = now() - start;
    cpu = cpu_seconds() - cpu;
    printf("stopped\n");
    fflush(stdout);

    /* Then the echoes in flight are checked too, not counted. */
    int in_flight = concurrency;
    double finish = now() + FINISH_GRACE;
    while (in_flight > 0 && (t = now()) < finish) {
        int n = epoll_wait(epoll, events, MAX_CONNECTIONS, milliseconds(finish - t));
        for (int k = 0; k < n; k++) {
            struct connection *c = events[k].data.ptr;
            if (events[k].events & EPOLLOUT) send_more(c);
            if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || !receive(c)) continue;
            epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
            in_flight--;
        }
    }
    errno = 0;
    if (in_flight > 0) fail(-1, "echoes incomplete after the grace period");
    /* EOF out, EOF back, and not a byte more than was echoed. */
    for (int i = 0; i < concurrency; i++) {
        struct connection *c = &connections[i];
        struct timeval timeout = {.tv_sec = (time_t)FINISH_GRACE};
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        if (set_blocking(c->fd, 1) < 0 || shutdown(c->fd, SHUT_WR) < 0) fail(i, "shutdown");
        unsigned char extra;
        errno = 0;
        ssize_t n = recv(c->fd, &extra, 1, 0);
        if (n < 0) fail(i, "at EOF");
        errno = 0;
        if (n > 0) fail(i, "got bytes nobody sent");
        close(c->fd);
    }
    errno = 0;
    if (messages == 0) fail(-1, "no echo completed");
    qsort(latencies, messages, sizeof *latencies, compare_doubles);
    printf("{\"messages\": %zu, \"seconds\": %.6f, \"p50_ms\": %.4f, \"p90_ms\": %.4f, "
           "\"p99_ms\": %.4f, \"max_ms\": %.4f, \"cpu_s\": %.4f}\n",
           messages, elapsed, quantile(latencies, messages, 0.50) * 1000,
           quantile(latencies, messages, 0.90) * 1000, quantile(latencies, messages, 0.99) * 1000,
           latencies[messages - 1] * 1000, cpu);
    return 0;
}
