/*
 * cpu_features.c — CPUID + XGETBV feature detection (see cpu_features.h).
 */
#include "cpu_features.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define OPC_X86 1
#endif

static opc_cpu_features g_feat;
static char g_feat_str[256];
static pthread_once_t g_feat_once = PTHREAD_ONCE_INIT;

#ifdef OPC_X86
/* XGETBV(0): which register states the OS has enabled in XCR0. Written as
 * inline asm so this file needs no -mxsave. Only valid when CPUID reports
 * OSXSAVE, which the caller checks first. */
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_x86(opc_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned max_leaf = a;
    memcpy(f->vendor + 0, &b, 4);
    memcpy(f->vendor + 4, &d, 4);
    memcpy(f->vendor + 8, &c, 4);
    f->vendor[12] = '\0';

    __cpuid(1, a, b, c, d);
    bool osxsave = (c >> 27) & 1;
    f->sse42 = (c >> 20) & 1;
    bool avx_cpu = (c >> 28) & 1;
    bool fma_cpu = (c >> 12) & 1;
    bool f16c_cpu = (c >> 29) & 1;

    /* XCR0 bits 1,2: XMM and YMM state; bits 5,6,7: opmask, ZMM_Hi256, Hi16_ZMM. */
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool os_ymm = (xcr0 & 0x6) == 0x6;
    bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;

    f->avx = avx_cpu && os_ymm;
    f->fma = fma_cpu && os_ymm;
    f->f16c = f16c_cpu && os_ymm;

    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = ((b >> 5) & 1) && os_ymm;
        f->bmi2 = (b >> 8) & 1;
        f->avx512f = ((b >> 16) & 1) && os_zmm;
        f->avx512dq = ((b >> 17) & 1) && os_zmm;
        f->avx512bw = ((b >> 30) & 1) && os_zmm;
        f->avx512vl = ((b >> 31) & 1) && os_zmm;
        f->avx512vbmi = ((c >> 1) & 1) && os_zmm;
        f->avx512vnni = ((c >> 11) & 1) && os_zmm;
        unsigned a1 = 0, b1, c1, d1;
        if (a >= 1) __cpuid_count(7, 1, a1, b1, c1, d1);
        f->avx_vnni = ((a1 >> 4) & 1) && os_ymm;
        f->avx512bf16 = ((a1 >> 5) & 1) && os_zmm;
    }

    __cpuid(0x80000000u, a, b, c, d);
    if (a >= 0x80000004u) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++)
            __cpuid(0x80000002u + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        char raw[49];
        memcpy(raw, r, 48);
        raw[48] = '\0';
        const char *s = raw;
        while (*s == ' ') s++;
        snprintf(f->brand, sizeof f->brand, "%s", s);
        size_t n = strlen(f->brand);
        while (n > 0 && f->brand[n - 1] == ' ') f->brand[--n] = '\0';
    }
}
#endif

static void detect(void) {
#ifdef OPC_X86
    detect_x86(&g_feat);
#endif
    const opc_cpu_features *f = &g_feat;
    struct {
        bool on;
        const char *name;
    } flags[] = {
        {f->sse42, "sse4.2"},       {f->avx, "avx"},           {f->avx2, "avx2"},
        {f->fma, "fma"},            {f->f16c, "f16c"},         {f->bmi2, "bmi2"},
        {f->avx_vnni, "avx_vnni"},  {f->avx512f, "avx512f"},   {f->avx512bw, "avx512bw"},
        {f->avx512vl, "avx512vl"},  {f->avx512dq, "avx512dq"}, {f->avx512vnni, "avx512vnni"},
        {f->avx512vbmi, "avx512vbmi"}, {f->avx512bf16, "avx512bf16"},
    };
    size_t len = 0;
    g_feat_str[0] = '\0';
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (!flags[i].on) continue;
        int w = snprintf(g_feat_str + len, sizeof g_feat_str - len, "%s%s", len ? " " : "",
                         flags[i].name);
        if (w < 0 || (size_t)w >= sizeof g_feat_str - len) break;
        len += (size_t)w;
    }
}

const opc_cpu_features *opc_cpu_get_features(void) {
    pthread_once(&g_feat_once, detect);
    return &g_feat;
}

bool opc_cpu_has_avx2(void) {
    const opc_cpu_features *f = opc_cpu_get_features();
    return f->avx2 && f->fma && f->f16c;
}

bool opc_cpu_has_avx512(void) {
    const opc_cpu_features *f = opc_cpu_get_features();
    return opc_cpu_has_avx2() && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq;
}

const char *opc_cpu_features_str(void) {
    opc_cpu_get_features();
    return g_feat_str;
}
