/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Frame checks shared by every transport (format drawn in xport.h).
 */
#include <errno.h>

#include "core.h"
#include "xport.h"

int xf_check_header(const xf_hdr *h)
{
	if (h->magic != XF_MAGIC || h->version != XF_VERSION ||
	    h->kind < XF_DATA || h->kind > XF_BYE)
		return -EBADMSG;
	if (h->len > XPORT_MAX_FRAME - XF_HDR)
		return -EMSGSIZE;
	if (h->kind != XF_DATA && h->len != 0)
		return -EBADMSG;
	return 0;
}

int xf_check_payload(const xf_hdr *h, const void *payload)
{
	return crc32c(0, payload, h->len) == h->crc ? 0 : -EBADMSG;
}
