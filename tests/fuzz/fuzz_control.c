/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the cluster's control-message decoder (net/control.c):
 * any bytes, read as a message header and payload, must be refused with an
 * error or decode into a message whose re-encoding decodes to the same
 * fields -- never crash, never read out of bounds.  The first byte picks
 * the type when the header is refused, so every type's field list is
 * exercised.  Replayed by the test suite (fuzz_driver.c); a libFuzzer
 * binary with -Dfuzz=enabled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t type;
	uint32_t len;
	ctl_msg m, m2;
	char err[256];

	if (size >= CTL_HDR && ctl_check_header(data, &type, &len) == 0) {
		if (len > size - CTL_HDR)
			len = (uint32_t)(size - CTL_HDR);
		data += CTL_HDR;
		size = len;
	} else {
		if (!size)
			return 0;
		type = (uint8_t)(data[0] % (CTL_TYPE_MAX + 2));
		data++;
		size--;
	}
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (ctl_decode(type, copy, size, &m, err, sizeof(err)) == 0) {
		/* What decoded encodes back and decodes to the same fields (lists
		 * are still length-prefixed here: re-encode needs them
		 * NUL-separated, so skip messages that carry one). */
		if (!m.nlist) {
			size_t n = ctl_encoded_size(&m);
			uint8_t *buf = malloc(n);
			if (buf) {
				ctl_encode(&m, buf);
				uint8_t t2;
				uint32_t l2;
				if (ctl_check_header(buf, &t2, &l2) != 0 || t2 != type ||
				    l2 != n - CTL_HDR ||
				    ctl_decode(t2, buf + CTL_HDR, l2, &m2, err, sizeof(err)) != 0 ||
				    m2.job != m.job || m2.id != m.id || m2.rc != m.rc ||
				    m2.blob_len != m.blob_len || strcmp(m2.dir, m.dir) ||
				    strcmp(m2.name, m.name)) {
					fprintf(stderr, "fuzz_control: type %u does not round-trip\n",
						type);
					abort();
				}
				free(buf);
			}
		}
	}
	free(copy);
	return 0;
}
