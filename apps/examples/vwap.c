/* SPDX-License-Identifier: Apache-2.0 */
#include <weir/weir.h>
/* placeholder: being written */
int weir_job(weir_env *env, int argc, char **argv);
int weir_job(weir_env *env, int argc, char **argv) { (void)env; (void)argc; (void)argv; return 1; }
