/*
 * cli.h — subcommands of the `opacc1ty` command-line tool. Each lives in its
 * own cmd_<name>.c and returns a process exit status (0 ok, 1 failure,
 * 2 usage error). Only the CLI prints to stdout or exits.
 */
#ifndef OPC_CLI_H
#define OPC_CLI_H

#include "opacc1ty.h"

typedef struct opc_cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} opc_cli_cmd;

/* Print "opacc1ty: <context>: <STATUS>: <last error>" to stderr; returns 1. */
int opc_cli_fail(opc_status st, const char *context);

int opc_cmd_info(int argc, char **argv);
int opc_cmd_tokenize(int argc, char **argv);
int opc_cmd_quantize(int argc, char **argv);
int opc_cmd_generate(int argc, char **argv);
int opc_cmd_perplexity(int argc, char **argv);
int opc_cmd_benchmark(int argc, char **argv);
int opc_cmd_synth(int argc, char **argv);
#ifdef OPC_HAVE_SERVER
int opc_cmd_serve(int argc, char **argv);
#endif

#endif
