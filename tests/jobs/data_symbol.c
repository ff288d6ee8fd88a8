/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Not a job: it exports `weir_job` as a data object, as a slip in a job's
 * source can.  `weir run data_symbol.so` must refuse it with a message
 * (calling it jumped into the data and crashed).  tests/e2e/bad_input.sh.
 */
extern int weir_job;
int weir_job = 3;
