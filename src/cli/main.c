/*
 * main.c — `opacc1ty <command> [args]`: dispatch to a subcommand.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* Add a subcommand here and in cli.h; implement it in cmd_<name>.c. */
static const opc_cli_cmd g_cmds[] = {
    {"info", opc_cmd_info, "show a model's config, tokenizer and tensors"},
    {"tokenize", opc_cmd_tokenize, "encode text to token ids and decode them back"},
    {"quantize", opc_cmd_quantize, "compress a model to ~2 bits/weight into a .bf2 file"},
    {"generate", opc_cmd_generate, "generate text from a prompt (CPU reference)"},
    {"perplexity", opc_cmd_perplexity, "perplexity and KLD on a text file (llama.cpp protocol)"},
    {"benchmark", opc_cmd_benchmark, "prefill/decode speed and % of measured memory bandwidth"},
    {"synth", opc_cmd_synth, "write a random-weight model with a real model's shapes (speed tests)"},
#ifdef OPC_HAVE_SERVER
    {"serve", opc_cmd_serve, "OpenAI-compatible HTTP server (completions, chat, streaming)"},
#endif
};

int opc_cli_fail(opc_status st, const char *context) {
    fprintf(stderr, "opacc1ty: %s: %s: %s\n", context, opc_status_str(st), opc_last_error());
    return 1;
}

static void usage(FILE *f) {
    fprintf(f, "opacc1ty %s — ~2-bit learned-codebook LLM compression and inference\n\n", opc_version());
    fprintf(f, "usage: opacc1ty <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        fprintf(f, "  %-12s %s\n", g_cmds[i].name, g_cmds[i].summary);
    fprintf(f, "\nRun `opacc1ty <command> --help` for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("opacc1ty %s\n", opc_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "opacc1ty: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
