/*
 * cpu_features.h — what the running x86-64 CPU (and the OS) can execute.
 *
 * A feature counts only when the CPU reports it (CPUID) AND the OS saves the
 * matching register state on context switches (XGETBV: XMM/YMM for AVX,
 * plus opmask/ZMM for AVX-512). Kernels compiled with -mavx2 / -mavx512f are
 * called only when the matching flag here is set, so one binary runs on any
 * x86-64 (and on other architectures everything reads false).
 */
#ifndef OPC_CPU_FEATURES_H
#define OPC_CPU_FEATURES_H

#include <stdbool.h>

typedef struct opc_cpu_features {
    bool sse42;
    bool avx, avx2, fma, f16c, bmi2;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512vbmi, avx512bf16;
    bool avx_vnni;
    char vendor[13]; /* "GenuineIntel", "AuthenticAMD", "" off x86 */
    char brand[49];  /* processor brand string, trimmed; "" when unknown */
} opc_cpu_features;

/* The features of this machine, detected once (thread-safe); never NULL. */
const opc_cpu_features *opc_cpu_get_features(void);

/* Usable kernel levels derived from the flags above. */
bool opc_cpu_has_avx2(void);   /* AVX2 + FMA + F16C with OS YMM support */
bool opc_cpu_has_avx512(void); /* AVX-512 F/BW/VL/DQ + FMA + F16C with OS ZMM support */

/* Space-separated list of the detected flags, e.g. "avx2 fma f16c avx512f ..." */
const char *opc_cpu_features_str(void);

#endif /* OPC_CPU_FEATURES_H */
