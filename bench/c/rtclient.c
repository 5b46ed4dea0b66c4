/* Round-trip client for the relay benchmark; prints one JSON object on stdout.
 *
 * Usage:
 *   rtclient lat    PORT N SIZE     64-byte-style ping-pong (mode E): N timed round trips
 *   rtclient split  PORT N BODY     client writes header and body in two send()s (mode F)
 *   rtclient rsplit PORT N BODY     the backend writes header and body in two send()s (mode R)
 *   rtclient conc   PORT CONNS MS SIZE   CONNS connections ping-pong for MS milliseconds
 * Every mode first runs N/10 (at least 10) untimed warm-up round trips on the same connection.
 * Times are CLOCK_MONOTONIC; percentiles are nearest-rank over the timed samples, in µs.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int read_full(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const char *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t w = send(fd, buf + put, n - put, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        put += (size_t)w;
    }
    return 0;
}

static int dial(int port, char mode) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 || write_full(fd, &mode, 1) < 0) {
        perror("rtclient: connect");
        exit(1);
    }
    return fd;
}

/* One round trip; returns 0 or -1. */
static int round_trip(int fd, char mode, char *buf, int size) {
    if (mode == 'E') {
        return write_full(fd, buf, (size_t)size) < 0 || read_full(fd, buf, (size_t)size) < 0 ? -1 : 0;
    }
    uint32_t len = htonl((uint32_t)size);
    memcpy(buf, &len, 4);
    if (mode == 'F') { /* header, then body: two pieces on the client->gateway leg */
        if (write_full(fd, buf, 4) < 0 || write_full(fd, buf + 4, (size_t)size) < 0) return -1;
    } else if (write_full(fd, buf, 4 + (size_t)size) < 0) {
        return -1;
    }
    return read_full(fd, buf, 4 + (size_t)size);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *s, int n, double p) {
    int i = (int)(p / 100.0 * n + 0.999999) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return s[i];
}

static int run_samples(int port, char mode, int n, int size) {
    int fd = dial(port, mode);
    char buf[65536];
    memset(buf, 'x', sizeof buf);
    int warm = n / 10 < 10 ? 10 : n / 10;
    for (int i = 0; i < warm; i++)
        if (round_trip(fd, mode, buf, size) < 0) { fprintf(stderr, "rtclient: io error\n"); return 1; }
    double *s = malloc(sizeof(double) * (size_t)n);
    int over10 = 0;
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        if (round_trip(fd, mode, buf, size) < 0) { fprintf(stderr, "rtclient: io error\n"); return 1; }
        s[i] = now_us() - t0;
        if (s[i] > 10000.0) over10++;
    }
    close(fd);
    qsort(s, (size_t)n, sizeof(double), cmp);
    printf("{\"n\": %d, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, "
           "\"over_10ms\": %d}\n",
           n, pct(s, n, 50), pct(s, n, 90), pct(s, n, 99), s[n - 1], over10);
    free(s);
    return 0;
}

struct conc_arg { int port, size; double from, until; long count; };

static void *conc_worker(void *p) {
    struct conc_arg *a = p;
    int fd = dial(a->port, 'E');
    char buf[65536];
    memset(buf, 'y', sizeof buf);
    for (int i = 0; i < 10; i++) round_trip(fd, 'E', buf, a->size);
    while (now_us() < a->until) {
        if (round_trip(fd, 'E', buf, a->size) < 0) break;
        if (now_us() >= a->from) a->count++;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "conc") != 0) {
        char mode = strcmp(argv[1], "lat") == 0 ? 'E' : strcmp(argv[1], "split") == 0 ? 'F'
                  : strcmp(argv[1], "rsplit") == 0 ? 'R' : 0;
        if (mode) return run_samples(atoi(argv[2]), mode, atoi(argv[3]), atoi(argv[4]));
    }
    if (argc == 6 && strcmp(argv[1], "conc") == 0) {
        int port = atoi(argv[2]), conns = atoi(argv[3]), ms = atoi(argv[4]), size = atoi(argv[5]);
        pthread_t *t = calloc((size_t)conns, sizeof *t);
        struct conc_arg *a = calloc((size_t)conns, sizeof *a);
        double start = now_us() + 200000.0; /* 0.2 s to connect and warm up */
        for (int i = 0; i < conns; i++) {
            a[i] = (struct conc_arg){port, size, start, start + ms * 1000.0, 0};
            pthread_create(&t[i], NULL, conc_worker, &a[i]);
        }
        long total = 0;
        for (int i = 0; i < conns; i++) { pthread_join(t[i], NULL); total += a[i].count; }
        printf("{\"conns\": %d, \"round_trips\": %ld, \"rt_per_s\": %.0f}\n", conns, total,
               total / (ms / 1000.0));
        return 0;
    }
    fprintf(stderr, "usage: rtclient lat|split|rsplit PORT N SIZE | conc PORT CONNS MS SIZE\n");
    return 2;
}
