// SPDX-License-Identifier: GPL-2.0
// Spare-cycle counter for the forward benchmark: spins at SCHED_IDLE, the
// lowest priority, on whatever CPU it is pinned to, and counts its loops into
// a shared file. Whatever else runs on that CPU (softirqs, NAPI threads) takes
// its cycles first, so the loops it loses while packets flow measure the
// CPU time they cost. Keeping the CPU busy also spares every mode the cost of
// waking an idle virtual CPU, which would otherwise be charged per batch.
//   spare FILE MAX_SECONDS
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOOPS_PER_COUNT 1000

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: spare FILE MAX_SECONDS\n");
		return 2;
	}
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 64)) {
		perror(argv[1]);
		return 1;
	}
	volatile uint64_t *count = mmap(NULL, 64, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (count == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	struct sched_param sp = { 0 };
	if (sched_setscheduler(0, SCHED_IDLE, &sp)) {
		perror("sched_setscheduler");
		return 1;
	}
	alarm(atoi(argv[2])); /* bounded even if nobody stops it */
	for (;;) {
		for (int i = 0; i < LOOPS_PER_COUNT; i++)
			__asm__ volatile("" ::: "memory");
		*count = *count + 1;
	}
}
