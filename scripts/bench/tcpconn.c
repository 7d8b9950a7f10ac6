// SPDX-License-Identifier: GPL-2.0
// The forward benchmark's TCP connection-setup profile: real connections
// through the router, each a handshake, a one-byte request, a one-byte
// response and an abortive close (SO_LINGER 0, so an RST), which leaves no
// TIME_WAIT on either end to run the client out of ports.
//   tcpconn server PORT MAX_SECONDS
//     accepts and answers until SIGTERM or MAX_SECONDS; prints "listening"
//     once ready and "accepted=N peer=ADDR" at the end (ADDR: the address the
//     first connection came from, "mixed" if later ones came from another).
//   tcpconn client DST_IP PORT IN_FLIGHT COUNT MAX_SECONDS
//     keeps IN_FLIGHT connections under way until COUNT have completed or
//     MAX_SECONDS passed; prints "conns=N failed=F ns=T".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EVENTS 256
#define LISTEN_BACKLOG 4096
#define POLL_MS 100

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "tcpconn: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Closes with an RST rather than a FIN: no TIME_WAIT. */
static void close_abortive(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static int server(int port, int max_seconds)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct epoll_event ev, events[EVENTS];
	uint64_t deadline = now_ns() + (uint64_t)max_seconds * 1000000000ull;
	unsigned long accepted = 0;
	char peer[INET_ADDRSTRLEN] = "none";
	uint32_t first_peer = 0;
	int mixed = 0, one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int ep = epoll_create1(0);

	if (lfd < 0 || ep < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, LISTEN_BACKLOG))
		die("listen");
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	printf("listening\n");
	fflush(stdout);
	while (!stop && now_ns() < deadline) {
		int n = epoll_wait(ep, events, EVENTS, POLL_MS);

		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == lfd) {
				struct sockaddr_in from;
				socklen_t len = sizeof(from);
				int c;

				while ((c = accept4(lfd, (struct sockaddr *)&from, &len, SOCK_NONBLOCK)) >= 0) {
					if (!accepted++) {
						first_peer = from.sin_addr.s_addr;
						inet_ntop(AF_INET, &from.sin_addr, peer, sizeof(peer));
					} else if (from.sin_addr.s_addr != first_peer) {
						mixed = 1;
					}
					ev.events = EPOLLIN;
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
					len = sizeof(from);
				}
				continue;
			}
			char b;
			ssize_t r = read(fd, &b, 1);

			if (r == 1 && write(fd, &b, 1) == 1)
				continue;
			if (r < 0 && errno == EAGAIN)
				continue;
			/* The client's RST or FIN: done with this one. */
			close(fd);
		}
	}
	printf("accepted=%lu peer=%s\n", accepted, mixed ? "mixed" : peer);
	return 0;
}

enum conn_state { CONNECTING, AWAIT_RESPONSE };

static int client(const char *dst, int port, int in_flight, unsigned long count, int max_seconds)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct epoll_event ev, events[EVENTS];
	unsigned long started = 0, done = 0, failed = 0;
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)max_seconds * 1000000000ull;
	int ep = epoll_create1(0), active = 0;

	if (inet_pton(AF_INET, dst, &addr.sin_addr) != 1) {
		fprintf(stderr, "tcpconn: bad address %s\n", dst);
		return 2;
	}
	if (ep < 0)
		die("epoll");
	for (;;) {
		while (active < in_flight && started < count && now_ns() < deadline) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

			if (fd < 0)
				die("socket");
			started++;
			if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) && errno != EINPROGRESS) {
				failed++;
				close(fd);
				continue;
			}
			ev.events = EPOLLOUT;
			ev.data.u64 = (uint64_t)fd << 32 | CONNECTING;
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			active++;
		}
		if (!active)
			break;
		int n = epoll_wait(ep, events, EVENTS, POLL_MS);

		for (int i = 0; i < n; i++) {
			int fd = events[i].data.u64 >> 32;
			enum conn_state st = (enum conn_state)(events[i].data.u64 & 0xffffffff);
			int err = 0;
			socklen_t len = sizeof(err);
			char b = 'q';

			if (st == CONNECTING) {
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (!err && write(fd, &b, 1) == 1) {
					ev.events = EPOLLIN;
					ev.data.u64 = (uint64_t)fd << 32 | AWAIT_RESPONSE;
					epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
					continue;
				}
				failed++;
			} else {
				ssize_t r = read(fd, &b, 1);

				if (r < 0 && errno == EAGAIN)
					continue;
				if (r == 1)
					done++;
				else
					failed++;
			}
			close_abortive(fd);
			active--;
		}
		if (now_ns() >= deadline + POLL_MS * 1000000ull * 10)
			break; /* stragglers after the deadline count as neither */
	}
	printf("conns=%lu failed=%lu ns=%lu\n", done, failed, (unsigned long)(now_ns() - t0));
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGTERM, on_term);
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && !strcmp(argv[1], "server"))
		return server(atoi(argv[2]), atoi(argv[3]));
	if (argc == 7 && !strcmp(argv[1], "client"))
		return client(argv[2], atoi(argv[3]), atoi(argv[4]), strtoul(argv[5], NULL, 10), atoi(argv[6]));
	fprintf(stderr, "usage: tcpconn server PORT MAX_SECONDS | tcpconn client DST_IP PORT IN_FLIGHT COUNT MAX_SECONDS\n");
	return 2;
}
