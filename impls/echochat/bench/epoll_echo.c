/* The machine's ceiling for the echo benchmark: a single-threaded epoll echo
 * server in C, level-triggered, non-blocking, with the benchmarks' contract:
 * `epoll_echo [--port N]` prints "listening on 127.0.0.1:PORT" once it
 * listens and exits 0 on SIGTERM or SIGINT. Like the Python servers it stops
 * reading from a client while that client's echo is not fully sent. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* asyncio's transports read up to 256 KiB at a time (max_size in
 * Lib/asyncio/selector_events.py). With 64 KiB, a 100 KiB echo took two
 * reads and two sends, and asyncio's Protocol layer outran this "ceiling". */
#define BUFFER_SIZE 262144

struct connection {
    int fd;
    size_t pending, offset; /* Bytes of buf not yet sent, starting at offset. */
    char buf[BUFFER_SIZE];
};

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static void close_connection(int epoll, struct connection *c) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static void watch(int epoll, int op, struct connection *c, unsigned events) {
    struct epoll_event event = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll, op, c->fd, &event) < 0) fail("epoll_ctl");
}

/* Send what is pending; returns -1 if the connection broke. */
static int flush(struct connection *c) {
    while (c->pending > 0) {
        ssize_t n = send(c->fd, c->buf + c->offset, c->pending, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        c->offset += (size_t)n;
        c->pending -= (size_t)n;
    }
    return 0;
}

/* One readiness event: read and echo, or finish a partial echo. */
static void serve(int epoll, struct connection *c, unsigned events) {
    if (c->pending == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        ssize_t n = recv(c->fd, c->buf, BUFFER_SIZE, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            close_connection(epoll, c);
            return;
        }
        if (n < 0) return;
        c->pending = (size_t)n;
        c->offset = 0;
    }
    int was_blocked = events & EPOLLOUT;
    if (flush(c) < 0) {
        close_connection(epoll, c);
        return;
    }
    /* Backpressure: while an echo is stuck, wait to write instead of reading. */
    if (c->pending > 0 && !was_blocked) watch(epoll, EPOLL_CTL_MOD, c, EPOLLOUT);
    if (c->pending == 0 && was_blocked) watch(epoll, EPOLL_CTL_MOD, c, EPOLLIN);
}

static void accept_all(int epoll, int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return; /* EAGAIN: accepted everything; anything else: try later. */
        int one = 1;        /* As asyncio, uvloop and trio do on every TCP socket. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct connection *c = malloc(sizeof *c);
        if (c == NULL) fail("malloc");
        c->fd = fd;
        c->pending = c->offset = 0;
        watch(epoll, EPOLL_CTL_ADD, c, EPOLLIN);
    }
}

int main(int argc, char **argv) {
    int port = 0;
    if (argc == 3 && strcmp(argv[1], "--port") == 0) {
        port = atoi(argv[2]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
        return 2;
    }
    /* Signals arrive as a readable fd, so a signal between two epoll_wait
     * calls cannot be lost and no handler runs in the middle of a send. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (sigprocmask(SIG_BLOCK, &stop, NULL) < 0) fail("sigprocmask");
    int signals = signalfd(-1, &stop, SFD_NONBLOCK);
    if (signals < 0) fail("signalfd");

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0) fail("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0) fail("bind");
    if (listen(listener, SOMAXCONN) < 0) fail("listen");
    socklen_t length = sizeof address;
    if (getsockname(listener, (struct sockaddr *)&address, &length) < 0) fail("getsockname");

    int epoll = epoll_create1(0);
    if (epoll < 0) fail("epoll_create1");
    /* The listener and the signalfd are tagged with the addresses of their
     * descriptors' variables, which no connection's pointer can equal. */
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = &listener};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event) < 0) fail("epoll_ctl listener");
    event.data.ptr = &signals;
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, signals, &event) < 0) fail("epoll_ctl signalfd");

    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);

    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epoll, events, 64, -1);
        if (n < 0 && errno != EINTR) fail("epoll_wait");
        for (int i = 0; i < n; i++) {
            void *source = events[i].data.ptr;
            if (source == &signals) return 0;
            if (source == &listener) {
                accept_all(epoll, listener);
            } else {
                serve(epoll, source, events[i].events);
            }
        }
    }
}
