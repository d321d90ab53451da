/*
 * progress.c — TTY-aware progress line on stderr (see progress.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include "core.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void opc_progress_init(opc_progress *p, const char *label, int64_t total, int quiet) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total > 0 ? total : 0;
    p->t_start = opc_time_s();
    p->t_drawn = -1.0;
    p->enabled = !quiet && isatty(STDERR_FILENO);
}

void opc_progress_update(opc_progress *p, int64_t done, const char *extra) {
    p->done = done;
    if (!p->enabled) return;
    double now = opc_time_s();
    /* Throttle: a redraw costs a write(2); 10 Hz is smooth enough. Always
     * draw the final state. */
    if (p->t_drawn >= 0 && now - p->t_drawn < 0.1 && done < p->total) return;
    p->t_drawn = now;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    double frac = p->total > 0 ? (double)done / (double)p->total : 0.0;
    if (frac > 1.0) frac = 1.0;
    int fill = (int)(frac * WIDTH + 0.5);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    double el = now - p->t_start;
    double eta = done > 0 && p->total > done ? el * (double)(p->total - done) / (double)done : 0.0;
    fprintf(stderr, "\r%s [%s] %lld/%lld %3.0f%% %.0fs eta %.0fs %s\033[K", p->label, bar,
            (long long)done, (long long)p->total, 100.0 * frac, el, eta, extra ? extra : "");
    fflush(stderr);
    p->drawn = 1;
}

void opc_progress_finish(opc_progress *p) {
    if (p->enabled && p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->drawn = 0;
}
