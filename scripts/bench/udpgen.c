// The forward benchmark's sender: UDP over AF_PACKET (qdisc bypass) in
// sendmmsg batches, retrying when the device pushes back, so that it offers
// packets as fast as one CPU can build them.
//   udpgen IFNAME DST_MAC SRC_MAC SRC_IP DST_IP DPORT MODE NFLOWS COUNT
// MODE: flows (source ports base..base+NFLOWS-1 in turn) or newflow (every
// packet another port pair). Prints "sent=N ns=T".
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME 60
#define BASE_PORT 20000

static void mac(const char *s, uint8_t *out)
{
	sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &out[0], &out[1], &out[2], &out[3], &out[4], &out[5]);
}

static uint16_t ipsum(const void *p, int n)
{
	const uint16_t *w = p;
	uint32_t s = 0;

	for (; n > 1; n -= 2)
		s += *w++;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s;
}

int main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: %s IFNAME DST_MAC SRC_MAC SRC_IP DST_IP DPORT flows|newflow NFLOWS COUNT\n", argv[0]);
		return 2;
	}
	int newflow = !strcmp(argv[7], "newflow");
	long nflows = atol(argv[8]), count = atol(argv[9]);
	uint8_t tmpl[FRAME] = {0};
	struct ether_header *eth = (void *)tmpl;
	struct iphdr *ip = (void *)(tmpl + 14);
	struct udphdr *udp = (void *)(tmpl + 34);

	mac(argv[2], eth->ether_dhost);
	mac(argv[3], eth->ether_shost);
	eth->ether_type = htons(ETHERTYPE_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons(FRAME - 14);
	inet_pton(AF_INET, argv[4], &ip->saddr);
	inet_pton(AF_INET, argv[5], &ip->daddr);
	ip->check = ipsum(ip, 20);
	udp->dest = htons(atoi(argv[6]));
	udp->len = htons(FRAME - 34);

	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	int one = 1;
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = if_nametoindex(argv[1]) };
	if (!sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		perror("bind");
		return 1;
	}
	static uint8_t bufs[BATCH][FRAME];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		memcpy(bufs[i], tmpl, FRAME);
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = FRAME;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	long sent = 0;
	while (sent < count) {
		int n = count - sent < BATCH ? count - sent : BATCH;
		for (int i = 0; i < n; i++) {
			long k = sent + i;
			struct udphdr *u = (void *)(bufs[i] + 34);

			if (newflow) {
				u->source = htons(1024 + k % 60000);
				u->dest = htons(1024 + (k / 60000) % 60000);
			} else {
				u->source = htons(BASE_PORT + k % nflows);
			}
		}
		int r = sendmmsg(fd, msgs, n, 0);
		if (r > 0) {
			sent += r;
		} else if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) {
			sched_yield();
		} else {
			perror("sendmmsg");
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("sent=%ld ns=%ld\n", sent, (long)((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec)));
	return 0;
}
