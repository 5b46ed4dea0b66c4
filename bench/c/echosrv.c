/* Echo backend for the relay benchmark: one thread per connection, loopback only.
 *
 * Usage: echosrv PORTFILE   (binds 127.0.0.1:0, writes the port to PORTFILE, serves forever)
 * The first byte a client sends picks the mode:
 *   E  echo: write back whatever arrives
 *   F  framed: read a 4-byte big-endian length + body (in however many pieces), answer the
 *      complete message with one send()  (the TWS API answers only complete messages)
 *   R  reverse split: read a complete framed message, answer with header and body in two
 *      send()s  (the gateway side writes a message in two pieces)
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
#include <unistd.h>

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

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    int one = 1;
    char mode;
    char buf[65536];
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (read_full(fd, &mode, 1) == 0) {
        if (mode == 'E') {
            for (;;) {
                ssize_t r = recv(fd, buf, sizeof buf, 0);
                if (r <= 0 || write_full(fd, buf, (size_t)r) < 0) break;
            }
        } else if (mode == 'F' || mode == 'R') {
            for (;;) {
                uint32_t len;
                if (read_full(fd, buf, 4) < 0) break;
                memcpy(&len, buf, 4);
                len = ntohl(len);
                if (len > sizeof buf - 4 || read_full(fd, buf + 4, len) < 0) break;
                if (mode == 'F') {
                    if (write_full(fd, buf, 4 + len) < 0) break;
                } else if (write_full(fd, buf, 4) < 0 || write_full(fd, buf + 4, len) < 0) {
                    break;
                }
            }
        }
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: echosrv PORTFILE\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 512) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0) {
        perror("echosrv: bind/listen");
        return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror("echosrv: port file"); return 1; }
    fprintf(f, "%d\n", ntohs(a.sin_port));
    fclose(f);
    rename(tmp, argv[1]);
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0) close(fd);
        pthread_attr_destroy(&attr);
    }
}
