/*
 * extract_smol_tensors.c — write gpu_carry/h6_smol_tensors.bin, the real
 * weights tests/test_cuda_quant compares the CPU and GPU quantizers on (the
 * GPU machine has no GGUF): four SmolLM2-135M tensors of layer 3 as f16,
 * each with its sampled-calibration importance, unrotated and rotated
 * (rotation cap 2^15, as `quantize --rotate on`).
 *
 * Layout: "OPCQT01\0", int32 n, then per tensor: char name[64], int64 rows,
 * int64 cols, float imp[cols], float imp_rotated[cols], uint16 w[rows * cols]
 * (fp16, row-major). Little-endian host order.
 *
 * Build and run from the repository root (not part of the CMake build):
 *   gcc -O2 -std=c11 -Isrc -Iinclude bench/cuda/extract_smol_tensors.c -o /tmp/extract \
 *       build/libopacc1ty.a $(pkg-config --libs libcjson libpcre2-8) -fopenmp -lm \
 *       -L/usr/local/cuda/lib64 -lcudart -lcublas -lstdc++
 *   /tmp/extract models/SmolLM2-135M-Instruct.Q4_1.gguf gpu_carry/h6_smol_tensors.bin 1024
 */
#include "core/half.h"
#include "model/model.h"
#include "quant/quantize.h"
#include "quant/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf OUT.bin CALIB_TOKENS\n", argv[0]);
        return 2;
    }
    static const char *names[] = {"blk.3.attn_q.weight", "blk.3.attn_k.weight", "blk.3.ffn_gate.weight",
                                  "blk.3.ffn_down.weight"};
    const int32_t n = (int32_t)(sizeof names / sizeof names[0]);
    opc_model_desc *d = NULL;
    opc_importance imp0, imp1;
    int32_t ntok = atoi(argv[3]);
    if (opc_model_desc_open(argv[1], &d) ||
        opc_calibrate_sampled(d, ntok, 256, 1, 2, 0, 0, NULL, NULL, NULL, &imp0) ||
        opc_calibrate_sampled(d, ntok, 256, 1, 2, 0, OPC_CB_ROT_MAX_LOG2, NULL, NULL, NULL, &imp1)) {
        fprintf(stderr, "%s\n", opc_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fwrite("OPCQT01", 1, 8, f);
    fwrite(&n, 4, 1, f);
    for (int32_t i = 0; i < n; i++) {
        const opc_tensor *t = opc_model_desc_find(d, names[i]);
        if (!t || t->n_dims != 2) {
            fprintf(stderr, "%s: not a matrix in %s\n", names[i], argv[1]);
            return 1;
        }
        int64_t rows = t->shape[0], cols = t->shape[1];
        float *w = malloc((size_t)(rows * cols) * sizeof *w), *im = malloc((size_t)cols * sizeof *im);
        uint16_t *h = malloc((size_t)(rows * cols) * sizeof *h);
        if (!w || !im || !h || opc_dequantize(t->type, t->data, w, rows * cols)) {
            fprintf(stderr, "%s: %s\n", names[i], opc_last_error());
            return 1;
        }
        char nm[64] = {0};
        snprintf(nm, sizeof nm, "%s", names[i]);
        fwrite(nm, 1, sizeof nm, f);
        fwrite(&rows, 8, 1, f);
        fwrite(&cols, 8, 1, f);
        if (!opc_importance_get(&imp0, names[i], cols, im)) return 1;
        fwrite(im, 4, (size_t)cols, f);
        if (!opc_importance_get(&imp1, names[i], cols, im)) return 1;
        fwrite(im, 4, (size_t)cols, f);
        for (int64_t j = 0; j < rows * cols; j++) h[j] = opc_fp32_to_fp16(w[j]);
        fwrite(h, 2, (size_t)(rows * cols), f);
        printf("%s %lld x %lld\n", names[i], (long long)rows, (long long)cols);
        free(w);
        free(im);
        free(h);
    }
    int bad = fclose(f) != 0;
    opc_importance_free(&imp0);
    opc_importance_free(&imp1);
    opc_model_desc_free(d);
    return bad;
}
