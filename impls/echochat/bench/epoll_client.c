/* The echo benchmark's native load generator: the closed loop of echo.py's
 * Python client, in C, so that the fastest servers are measured rather than
 * the client. echo.py is the one to read; this does the same, message for
 * message: each of N connections sends SIZE bytes cut from the same pattern
 * (period 251, message n of connection i starting at (n * 7 + i) % 251),
 * waits for the whole echo, compares it byte for byte and sends the next,
 * for DURATION seconds; then the echoes in flight get 5 s to come back, and
 * each connection sends EOF and expects EOF with no extra byte.
 *
 * epoll_client --port P --size S --connections N --duration D [--tls-ca CERT]
 * prints "started" when the measured window opens, "stopped" when it closes
 * (the caller reads the server's CPU time at both), then one JSON line:
 * {"messages", "seconds", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_s",
 * "tls"}, cpu_s being this process's own CPU time during the window and tls
 * the protocol and cipher ("" on plain TCP). On a broken echo it prints
 * {"error": "..."} and exits 1.
 *
 * --tls-ca: every connection speaks TLS (OpenSSL), checking that the server's
 * certificate is CERT's and names localhost, with the same loop and checks;
 * the end is close_notify and EOF. Only in a build with -DECHO_TLS (and
 * -lssl -lcrypto): without OpenSSL's headers the benchmark builds the client
 * without it, and says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef ECHO_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define PERIOD 251
#define STEP 7
#define FINISH_GRACE 5.0
#define MAX_CONNECTIONS 1024

struct connection {
    int fd, index, registered_for_write;
#ifdef ECHO_TLS
    SSL *tls; /* NULL on plain TCP */
#endif
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

#ifdef ECHO_TLS
static SSL_CTX *tls_context; /* NULL on plain TCP */

static void fail_tls(int index, const char *what, int error) {
    char reason[256] = "";
    unsigned long code = ERR_get_error();
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    printf("{\"error\": \"connection %d: %s: SSL error %d %s%s\"}\n", index, what, error,
           reason, error == SSL_ERROR_SYSCALL && errno ? strerror(errno) : "");
    exit(1);
}

/* The client side of TLS, as a checking client does it: the server's
 * certificate must chain to the CA file given and name localhost. */
static SSL_CTX *new_tls_context(const char *ca) {
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (context == NULL || !SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) ||
        SSL_CTX_load_verify_locations(context, ca, NULL) != 1)
        fail_tls(-1, ca, 0);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    /* One record per SSL_write() when the socket takes no more, the rest sent
     * from wherever the message now is: the plain loop's partial send(). */
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A server that closes without close_notify reads as EOF, as on plain
     * TCP (the echoes were all checked by then); a record that does not
     * decrypt, or a byte more than was echoed, still fails the run. */
    SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return context;
}

/* The handshake, blocking, before the window opens. */
static void start_tls(struct connection *c) {
    c->tls = SSL_new(tls_context);
    if (c->tls == NULL || !SSL_set_fd(c->tls, c->fd) ||
        !SSL_set_tlsext_host_name(c->tls, "localhost") || !SSL_set1_host(c->tls, "localhost"))
        fail_tls(c->index, "SSL_new", 0);
    ERR_clear_error();
    int done = SSL_connect(c->tls);
    if (done != 1) fail_tls(c->index, "handshake", SSL_get_error(c->tls, done));
}
#endif

static int is_tls(const struct connection *c) {
#ifdef ECHO_TLS
    return c->tls != NULL;
#else
    (void)c;
    return 0;
#endif
}

/* Bytes the socket (or TLS) took of data, 0 if it would block. */
static size_t send_some(struct connection *c, const unsigned char *data, size_t length) {
#ifdef ECHO_TLS
    if (c->tls != NULL) {
        size_t written = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->tls, data, length, &written)) return written;
        int error = SSL_get_error(c->tls, 0);
        /* Retried later with the same rest of the message, as OpenSSL requires. */
        if (error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ) return 0;
        fail_tls(c->index, "SSL_write", error);
    }
#endif
    errno = 0;
    ssize_t n = send(c->fd, data, length, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) fail(c->index, "send");
    return n > 0 ? (size_t)n : 0;
}

/* Bytes read into data, 0 at EOF, -1 if nothing is there yet. */
static ssize_t receive_some(struct connection *c, unsigned char *data, size_t length) {
#ifdef ECHO_TLS
    if (c->tls != NULL) {
        size_t read = 0;
        ERR_clear_error();
        if (SSL_read_ex(c->tls, data, length, &read)) return (ssize_t)read;
        int error = SSL_get_error(c->tls, 0);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return -1;
        if (error == SSL_ERROR_ZERO_RETURN) return 0;
        fail_tls(c->index, "SSL_read", error);
    }
#endif
    errno = 0;
    ssize_t n = recv(c->fd, data, length, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
    if (n < 0) fail(c->index, "recv");
    return n;
}

static void watch(struct connection *c, int write) {
    struct epoll_event event = {.events = EPOLLIN | (write ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &event) < 0) fail(c->index, "epoll_ctl");
    c->registered_for_write = write;
}

/* Send what the socket takes; wait for writability only while some is left. */
static void send_more(struct connection *c) {
    /* A plain send() takes all the socket has room for; SSL_write() one record
     * at most (partial writes), so over TLS this sends until nothing more goes. */
    size_t sent;
    do {
        sent = send_some(c, c->message + (size - c->outgoing), c->outgoing);
        c->outgoing -= sent;
    } while (sent > 0 && c->outgoing > 0 && is_tls(c));
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
 * Into the rest of this message's buffer only, as echo.py does. A plain recv()
 * takes all that has arrived; SSL_read() one record at most, so over TLS
 * this reads until nothing more is there. */
static int receive(struct connection *c) {
    do {
        ssize_t n = receive_some(c, c->echo + c->received, size - c->received);
        if (n < 0) return 0;
        errno = 0;
        if (n == 0) fail(c->index, "closed mid-message");
        c->received += (size_t)n;
    } while (c->received < size && is_tls(c));
    if (c->received < size) return 0;
    if (memcmp(c->echo, c->message, size) != 0) fail(c->index, "got different bytes back");
    return 1;
}

static int set_blocking(int fd, int blocking) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

/* EOF out (close_notify first, over TLS), EOF back, and not a byte more than was echoed. */
static void expect_clean_close(struct connection *c) {
    struct timeval timeout = {.tv_sec = (time_t)FINISH_GRACE};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    errno = 0;
    if (set_blocking(c->fd, 1) < 0) fail(c->index, "fcntl");
#ifdef ECHO_TLS
    if (c->tls != NULL && SSL_shutdown(c->tls) < 0) fail_tls(c->index, "close_notify", 0);
#endif
    if (shutdown(c->fd, SHUT_WR) < 0) fail(c->index, "shutdown");
    unsigned char extra;
    ssize_t n = receive_some(c, &extra, 1);
    if (n < 0) fail(c->index, "no EOF");
    errno = 0;
    if (n > 0) fail(c->index, "got bytes nobody sent");
#ifdef ECHO_TLS
    SSL_free(c->tls);
#endif
    close(c->fd);
}

/* The TLS version and cipher the connection speaks, "" on plain TCP. */
static const char *tls_description(const struct connection *c) {
#ifdef ECHO_TLS
    static char description[128];
    if (c->tls == NULL) return "";
    snprintf(description, sizeof description, "%s %s", SSL_get_version(c->tls),
             SSL_get_cipher_name(c->tls));
    return description;
#else
    (void)c;
    return "";
#endif
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
    const char *tls_ca = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0) size = (size_t)atol(argv[i + 1]);
        else if (strcmp(argv[i], "--connections") == 0) concurrency = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0) duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--tls-ca") == 0) tls_ca = argv[i + 1];
    }
    if (argc % 2 == 0 || port <= 0 || size == 0 || concurrency < 1 ||
        concurrency > MAX_CONNECTIONS || !(duration > 0)) {
        fprintf(stderr,
                "usage: %s --port P --size BYTES --connections N --duration SECONDS "
                "[--tls-ca CERT]\n",
                argv[0]);
        return 2;
    }
#ifdef ECHO_TLS
    if (tls_ca != NULL) {
        tls_context = new_tls_context(tls_ca);
        signal(SIGPIPE, SIG_IGN); /* OpenSSL writes without MSG_NOSIGNAL. */
    }
#else
    errno = 0;
    if (tls_ca != NULL) fail(-1, "built without OpenSSL (no -DECHO_TLS): no --tls-ca");
#endif
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
#ifdef ECHO_TLS
        if (tls_context != NULL) start_tls(c);
#endif
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
    const char *tls = tls_description(&connections[0]);
    for (int i = 0; i < concurrency; i++) expect_clean_close(&connections[i]);
    errno = 0;
    if (messages == 0) fail(-1, "no echo completed");
    qsort(latencies, messages, sizeof *latencies, compare_doubles);
    printf("{\"messages\": %zu, \"seconds\": %.6f, \"p50_ms\": %.4f, \"p90_ms\": %.4f, "
           "\"p99_ms\": %.4f, \"max_ms\": %.4f, \"cpu_s\": %.4f, \"tls\": \"%s\"}\n",
           messages, elapsed, quantile(latencies, messages, 0.50) * 1000,
           quantile(latencies, messages, 0.90) * 1000, quantile(latencies, messages, 0.99) * 1000,
           latencies[messages - 1] * 1000, cpu, tls);
    return 0;
}
