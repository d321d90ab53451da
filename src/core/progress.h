/*
 * progress.h — a one-line progress display for long runs (perplexity,
 * calibration, quantization). Drawn on stderr only when stderr is a TTY;
 * when piped or redirected it stays silent, so logs are not filled with
 * carriage returns. Redraws at most ~10 times per second.
 */
#ifndef OPC_PROGRESS_H
#define OPC_PROGRESS_H

#include <stdint.h>

typedef struct opc_progress {
    char label[48];
    int64_t total;    /* units of work (chunks, tensors, ...) */
    int64_t done;
    double t_start;   /* opc_time_s() at init */
    double t_drawn;   /* last redraw */
    int enabled;      /* stderr is a TTY and not disabled by the caller */
    int drawn;        /* something is on the line (finish clears it) */
} opc_progress;

/* quiet != 0 disables the display even on a TTY. */
void opc_progress_init(opc_progress *p, const char *label, int64_t total, int quiet);
/* Set the amount done; `extra` (may be NULL) is shown after the bar,
 * e.g. "ppl 12.34". */
void opc_progress_update(opc_progress *p, int64_t done, const char *extra);
/* Clear the line (leaves the terminal as it was). */
void opc_progress_finish(opc_progress *p);

#endif /* OPC_PROGRESS_H */
