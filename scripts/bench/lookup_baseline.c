// The C side of the binding benchmark: N lookups of one key in a pinned map,
// through libbpf's bpf_map_lookup_elem, as a JS caller would make them.
//   lookup_baseline PIN_PATH KEY_HEX COUNT  ->  prints "ns_per_lookup=<float>"
#include <bpf/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s PIN_PATH KEY_HEX COUNT\n", argv[0]);
		return 2;
	}
	int fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		perror("bpf_obj_get");
		return 1;
	}
	unsigned char key[64] = {0}, value[4096];
	size_t klen = strlen(argv[2]) / 2;
	for (size_t i = 0; i < klen && i < sizeof key; i++)
		sscanf(argv[2] + 2 * i, "%2hhx", &key[i]);
	long n = atol(argv[3]);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		if (bpf_map_lookup_elem(fd, key, value)) {
			perror("bpf_map_lookup_elem");
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("ns_per_lookup=%.1f\n", ns / n);
	return 0;
}
