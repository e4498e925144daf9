// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The injected library of t_guard_exec: loaded with LD_PRELOAD (or LD_AUDIT, as an
 * audit module), it announces itself on stderr before main(), as code an attacker slips
 * under a workload's identity would run. The kernel must give such an exec no identity.
 */
#include <stdio.h>
#include <unistd.h>

__attribute__((constructor)) static void kw_injected(void)
{
	fprintf(stderr, "kw_preload: injected into pid %d\n", (int)getpid());
}

/* As an LD_AUDIT module: the version handshake, so that ld.so keeps it loaded. */
unsigned int la_version(unsigned int version)
{
	return version;
}
