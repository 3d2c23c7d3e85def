/* One whole decode step of the reference decoder (batch 1) in a single call, and the prompt's prefill in
 * another.
 *
 * Why this exists: at batch 1 a tiny decoder's step is a few dozen small matrix-vector products and
 * twice as many tiny element-wise ops. Driven from Python each op costs a dispatch of several
 * microseconds, which is most of a token's time on the smaller presets (on an Intel Xeon the 2.5m's
 * products took 0.24 ms of a 0.82 ms PyTorch step). Here the step is one call, one OpenMP parallel region,
 * and five barriers per layer. Entry points: tl_step (a token), tl_prefill (the prompt, float32),
 * tl_matvecs_only (the benchmark's floor), tl_alloc/tl_free (the weights' huge-page arena).
 * Matrices are float32, or bfloat16 bit patterns with tl->bf16 (--dtype bfloat16).
 *
 * Layout (arranged once per model by tinylm_ref/fused_decoder.py):
 *  - every matrix is stored as panels of PANEL output rows: panel p holds, for each input i, the PANEL
 *    weights W[p*PANEL + j][i] side by side, so the kernel streams memory strictly forwards and keeps the
 *    PANEL accumulators in vector registers (an outer-product GEMV: no horizontal sums);
 *  - RMSNorm gains are folded into the input columns of the matrix that follows them, and the attention
 *    scale into the query rows (as FastDecoder does);
 *  - the gate/up matrix interleaves HALF gate rows and the HALF matching up rows per panel, so the thread
 *    that computes a panel also applies silu(gate) * up without another pass or barrier.
 *
 * Determinism: each output is summed by exactly one thread in a fixed order, so the logits do not depend
 * on the thread count (torch's reductions can move the last bit when it changes).
 *
 * Threads: GNU OpenMP, resolved at load time to the libgomp torch already loaded (same soname), so this
 * shares torch's worker pool, wait policy and the thread count the harness's policy sets.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define PANEL 64
#define HALF (PANEL / 2)

typedef float v16 __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint32_t v16u __attribute__((vector_size(64)));

/* Everything the step reads, filled in by ctypes; the Python side keeps the tensors alive. */
typedef struct {
    int32_t dim, n_layers, n_heads, head_dim, ffn_dim, vocab;
    int32_t max_threads;
    int32_t bf16;                 /* 1: layer matrices are bfloat16 panels and their inputs are rounded to
                                     bfloat16 (--dtype bfloat16); the head stays float32 */
    const float *tok_emb;         /* (vocab, dim) */
    const float *pos_emb;         /* (max_seq_len, dim) */
    const void *const *qkv;       /* per layer: panels of (3 * dim) rows x dim */
    const void *const *proj;      /* per layer: panels of dim rows x dim */
    const void *const *gate_up;   /* per layer: interleaved panels of (2 * ffn) rows x dim */
    const void *const *down;      /* per layer: panels of dim rows x ffn */
    const float *head;            /* panels of vocab rows x dim */
    const float *attn_eps;        /* per layer */
    const float *ffn_eps;         /* per layer */
    float final_eps;
    /* scratch, sized by the Python side */
    float *x;                     /* (dim) residual stream */
    float *normed;                /* (max_threads, dim): each thread normalises x into its own row */
    float *qkv_out;               /* (panels(3 * dim) * PANEL) */
    float *attn_out;              /* (dim) */
    float *act;                   /* (panels(2 * ffn) * HALF) */
    float *scores;                /* (n_heads, cache capacity) */
} TlModel;

static inline int panels(int rows) { return (rows + PANEL - 1) / PANEL; }

/* y[p*PANEL + j] (+)= sum_i W[p*PANEL + j][i] * x[i] for the panels [p0, p1). Two accumulator sets (even
 * and odd i) give eight independent FMA chains per panel; they are added once at the end. */
static void gemv_panels(const float *restrict w, const float *restrict x, int n_in, int p0, int p1,
                        v16 out[][PANEL / 16]) {
    for (int p = p0; p < p1; p++) {
        const v16 *wp = (const v16 *)(w + (size_t)p * n_in * PANEL);
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
        int i = 0;
        for (; i + 1 < n_in; i += 2, wp += 8) {
            const float xa = x[i], xb = x[i + 1];
            a0 += xa * wp[0]; a1 += xa * wp[1]; a2 += xa * wp[2]; a3 += xa * wp[3];
            b0 += xb * wp[4]; b1 += xb * wp[5]; b2 += xb * wp[6]; b3 += xb * wp[7];
        }
        if (i < n_in) {
            const float xa = x[i];
            a0 += xa * wp[0]; a1 += xa * wp[1]; a2 += xa * wp[2]; a3 += xa * wp[3];
        }
        out[p - p0][0] = a0 + b0; out[p - p0][1] = a1 + b1;
        out[p - p0][2] = a2 + b2; out[p - p0][3] = a3 + b3;
    }
}

/* bfloat16 -> float32 is a 16-bit shift of the bits: exact, and two vector instructions per 16 weights. */
static inline v16 widen(v16h h) { return (v16)(__builtin_convertvector(h, v16u) << 16); }

/* The same with bfloat16 panels: half the bytes streamed per token, the products still in float32. */
static void gemv_panels_bf16(const uint16_t *restrict w, const float *restrict x, int n_in, int p0, int p1,
                             v16 out[][PANEL / 16]) {
    for (int p = p0; p < p1; p++) {
        const v16h *wp = (const v16h *)(w + (size_t)p * n_in * PANEL);
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
        int i = 0;
        for (; i + 1 < n_in; i += 2, wp += 8) {
            const float xa = x[i], xb = x[i + 1];
            a0 += xa * widen(wp[0]); a1 += xa * widen(wp[1]); a2 += xa * widen(wp[2]); a3 += xa * widen(wp[3]);
            b0 += xb * widen(wp[4]); b1 += xb * widen(wp[5]); b2 += xb * widen(wp[6]); b3 += xb * widen(wp[7]);
        }
        if (i < n_in) {
            const float xa = x[i];
            a0 += xa * widen(wp[0]); a1 += xa * widen(wp[1]); a2 += xa * widen(wp[2]); a3 += xa * widen(wp[3]);
        }
        out[p - p0][0] = a0 + b0; out[p - p0][1] = a1 + b1;
        out[p - p0][2] = a2 + b2; out[p - p0][3] = a3 + b3;
    }
}

static inline void gemv_any(const void *w, int bf16, const float *x, int n_in, int p0, int p1, v16 out[][PANEL / 16]) {
    if (bf16)
        gemv_panels_bf16((const uint16_t *)w, x, n_in, p0, p1, out);
    else
        gemv_panels((const float *)w, x, n_in, p0, p1, out);
}

/* Round to the nearest bfloat16 (ties to even), kept in a float: what a bf16 matrix's input is in
 * FastDecoder's bf16 mode (x.to(torch.bfloat16)); NaN and inf pass through. */
static inline float round_bf16(float x) {
    union { float f; uint32_t u; } v = {x};
    if ((v.u & 0x7f800000u) == 0x7f800000u) return x;
    v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
    return v.f;
}

/* The share [*lo, *hi) of n items that thread t of nt takes. */
static inline void split(int n, int t, int nt, int *lo, int *hi) {
    *lo = (int)((int64_t)n * t / nt);
    *hi = (int)((int64_t)n * (t + 1) / nt);
}

/* Writes PANEL outputs per panel of [p0, p1) into y, times scale (or adds them to y, unscaled), clipped to rows;
 * with bf16 panels each output is first rounded to bfloat16. */
static void gemv_store(const void *restrict w, int bf16, const float *restrict x, int n_in, int rows, int p0,
                       int p1, float *restrict y, int accumulate, float scale) {
    v16 acc[4][PANEL / 16];
    for (int p = p0; p < p1; p += 4) {
        int q = p + 4 < p1 ? p + 4 : p1;
        gemv_any(w, bf16, x, n_in, p, q, acc);
        for (int k = p; k < q; k++) {
            const float *a = (const float *)acc[k - p];
            int base = k * PANEL, n = rows - base < PANEL ? rows - base : PANEL;
            if (bf16)  /* a bf16 matrix's product is a bf16 tensor in FastDecoder: round it the same way */
                for (int j = 0; j < n; j++) y[base + j] = accumulate ? y[base + j] + round_bf16(a[j]) : round_bf16(a[j]) * scale;
            else if (accumulate)
                for (int j = 0; j < n; j++) y[base + j] += a[j];
            else
                for (int j = 0; j < n; j++) y[base + j] = a[j] * scale;
        }
    }
}

static inline float inv_rms(const float *x, int n, float eps) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += x[i] * x[i];
    return 1.0f / sqrtf(sum / (float)n + eps);
}

/* The input of the matrix after an RMSNorm, and the scale its products still need. float32: x / rms(x) and
 * 1. bfloat16: x rounded to bf16 and 1 / rms(x), applied to the products, as FastDecoder's bf16 mode does
 * (it rounds the un-normalised row and scales the output). */
static inline float normalise(const float *restrict x, float *restrict out, int n, float eps, int bf16) {
    const float r = inv_rms(x, n, eps);
    if (bf16) {
        for (int i = 0; i < n; i++) out[i] = round_bf16(x[i]);
        return r;
    }
    for (int i = 0; i < n; i++) out[i] = x[i] * r;
    return 1.0f;
}

/* One head's attention over positions 0..pos; q is pre-scaled. Writes this head's k and v at pos first. */
static void attend(const TlModel *m, int h, int pos, float *keys, float *values) {
    const int D = m->head_dim;
    const float *q = m->qkv_out + h * D, *k = m->qkv_out + m->dim + h * D, *v = m->qkv_out + 2 * m->dim + h * D;
    for (int d = 0; d < D; d++) {
        keys[(size_t)pos * D + d] = k[d];
        values[(size_t)pos * D + d] = v[d];
    }
    float *s = m->scores + (size_t)h * (pos + 1);
    float max = -INFINITY;
    for (int t = 0; t <= pos; t++) {
        const float *kt = keys + (size_t)t * D;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += q[d] * kt[d];
        s[t] = dot;
        if (dot > max) max = dot;
    }
    float total = 0.0f;
    for (int t = 0; t <= pos; t++) {
        s[t] = expf(s[t] - max);
        total += s[t];
    }
    float *y = m->attn_out + h * D;
    for (int d = 0; d < D; d++) y[d] = 0.0f;
    for (int t = 0; t <= pos; t++) {
        const float p = s[t] / total, *vt = values + (size_t)t * D;
        for (int d = 0; d < D; d++) y[d] += p * vt[d];
    }
    if (m->bf16)
        for (int d = 0; d < D; d++) y[d] = round_bf16(y[d]);
}

/* The step, or (full = 0) only its matrix-vector products with the same panels, threads and barriers: the
 * floor benchmarks/decode_speed.py compares the step against, so what it prints as "outside the matrix
 * products" is the norms, attention, activation and embedding work alone. */
static int run(const TlModel *m, int32_t token, int32_t pos, float *k_cache, float *v_cache, int32_t capacity,
               float *logits, int32_t threads, int full) {
    if (token < 0 || token >= m->vocab || pos < 0 || pos >= capacity) return -1;
    if (threads < 1) threads = 1;
    if (threads > m->max_threads) threads = m->max_threads;
    const int C = m->dim, H = m->n_heads, Fd = m->ffn_dim;
    const size_t layer_stride = (size_t)H * capacity * m->head_dim;
    if (full)
        for (int i = 0; i < C; i++) m->x[i] = m->tok_emb[(size_t)token * C + i] + m->pos_emb[(size_t)pos * C + i];

#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        float *normed = m->normed + (size_t)t * C;
        int lo, hi;
        const int bf16 = m->bf16;
        for (int layer = 0; layer < m->n_layers; layer++) {
            float scale = full ? normalise(m->x, normed, C, m->attn_eps[layer], bf16) : 1.0f;
            split(panels(3 * C), t, nt, &lo, &hi);
            gemv_store(m->qkv[layer], bf16, normed, C, 3 * C, lo, hi, m->qkv_out, 0, scale);
#pragma omp barrier
            if (full) {
                split(H, t, nt, &lo, &hi);
                for (int h = lo; h < hi; h++) {
                    size_t head = layer * layer_stride + (size_t)h * capacity * m->head_dim;
                    attend(m, h, pos, k_cache + head, v_cache + head);
                }
#pragma omp barrier
            }
            split(panels(C), t, nt, &lo, &hi);
            gemv_store(m->proj[layer], bf16, m->attn_out, C, C, lo, hi, full ? m->x : m->attn_out, full, 1.0f);
#pragma omp barrier
            scale = full ? normalise(m->x, normed, C, m->ffn_eps[layer], bf16) : 1.0f;
            split(panels(2 * Fd), t, nt, &lo, &hi);
            v16 acc[1][PANEL / 16];
            for (int p = lo; p < hi; p++) {
                gemv_any(m->gate_up[layer], bf16, normed, C, p, p + 1, acc);
                const float *a = (const float *)acc[0];
                for (int j = 0; j < HALF && p * HALF + j < Fd; j++) {
                    const float gate = bf16 ? round_bf16(a[j]) : a[j], up = bf16 ? round_bf16(a[HALF + j]) : a[HALF + j];
                    const float g = gate * scale, act = full ? g / (1.0f + expf(-g)) * (up * scale) : g;
                    m->act[p * HALF + j] = bf16 ? round_bf16(act) : act;
                }
            }
#pragma omp barrier
            split(panels(C), t, nt, &lo, &hi);
            gemv_store(m->down[layer], bf16, m->act, Fd, C, lo, hi, full ? m->x : m->attn_out, full, 1.0f);
#pragma omp barrier
        }
        if (full) normalise(m->x, normed, C, m->final_eps, 0);  /* the head is float32 in every mode */
        split(panels(m->vocab), t, nt, &lo, &hi);
        gemv_store(m->head, 0, normed, C, m->vocab, lo, hi, logits, 0, 1.0f);
    }
    return 0;
}

/* Logits (vocab) after feeding token at position pos. k_cache/v_cache are (n_layers, 1, n_heads,
 * capacity, head_dim) float32; slot pos of every layer is written. Returns 0, or -1 on bad arguments. */
int tl_step(const TlModel *m, int32_t token, int32_t pos, float *k_cache, float *v_cache, int32_t capacity,
            float *logits, int32_t threads) {
    return run(m, token, pos, k_cache, v_cache, capacity, logits, threads, 1);
}

/* The same step's matrix-vector products alone (benchmarks only: the outputs are meaningless). */
int tl_matvecs_only(const TlModel *m, float *logits, int32_t threads) {
    return run(m, 0, 0, 0, 0, 1, logits, threads, 0);
}

/* ---------------------------------------------------------------------------------------------- prefill */

enum { STORE, ACCUMULATE, SWIGLU };

/* Rows [0, T) of Y (+)= X W^T for the panels [p0, p1), two rows at a time: each panel is read from memory
 * once and from the core's cache for the other row pairs. SWIGLU writes silu(gate) * up of the interleaved
 * gate/up panels into y (row stride ldy, HALF outputs per panel). */
static void gemm_panels(const float *restrict w, const float *restrict x, int ldx, int T, int n_in, int rows,
                        int p0, int p1, float *restrict y, int ldy, int mode) {
    for (int p = p0; p < p1; p++) {
        const v16 *panel = (const v16 *)(w + (size_t)p * n_in * PANEL);
        for (int t = 0; t < T; t += 2) {
            const int pair = t + 1 < T;
            const float *x0 = x + (size_t)t * ldx, *x1 = pair ? x0 + ldx : x0;
            v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
            const v16 *wp = panel;
            for (int i = 0; i < n_in; i++, wp += 4) {
                const float u = x0[i], v = x1[i];
                a0 += u * wp[0]; a1 += u * wp[1]; a2 += u * wp[2]; a3 += u * wp[3];
                b0 += v * wp[0]; b1 += v * wp[1]; b2 += v * wp[2]; b3 += v * wp[3];
            }
            v16 out[2][PANEL / 16] = {{a0, a1, a2, a3}, {b0, b1, b2, b3}};
            for (int r = 0; r <= pair; r++) {
                const float *a = (const float *)out[r];
                float *yr = y + (size_t)(t + r) * ldy;
                if (mode == SWIGLU) {
                    for (int j = 0; j < HALF && p * HALF + j < rows; j++) {
                        const float g = a[j];
                        yr[p * HALF + j] = g / (1.0f + expf(-g)) * a[HALF + j];
                    }
                    continue;
                }
                int base = p * PANEL, n = rows - base < PANEL ? rows - base : PANEL;
                if (mode == ACCUMULATE)
                    for (int j = 0; j < n; j++) yr[base + j] += a[j];
                else
                    for (int j = 0; j < n; j++) yr[base + j] = a[j];
            }
        }
    }
}

/* Causal attention of rows [0, T) (positions start + t) for head h; writes the rows' keys and values first. */
static void attend_rows(const TlModel *m, int h, int T, int start, const float *qkv, float *attn, float *keys,
                        float *values) {
    const int C = m->dim, D = m->head_dim;
    for (int t = 0; t < T; t++) {
        const float *row = qkv + (size_t)t * 3 * C;
        for (int d = 0; d < D; d++) {
            keys[(size_t)(start + t) * D + d] = row[C + h * D + d];
            values[(size_t)(start + t) * D + d] = row[2 * C + h * D + d];
        }
    }
    float *s = m->scores + (size_t)h * (start + T);
    for (int t = 0; t < T; t++) {
        const int pos = start + t;
        const float *q = qkv + (size_t)t * 3 * C + h * D;
        float max = -INFINITY, total = 0.0f;
        for (int u = 0; u <= pos; u++) {
            const float *ku = keys + (size_t)u * D;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += q[d] * ku[d];
            s[u] = dot;
            if (dot > max) max = dot;
        }
        for (int u = 0; u <= pos; u++) {
            s[u] = expf(s[u] - max);
            total += s[u];
        }
        float *y = attn + (size_t)t * C + h * D;
        for (int d = 0; d < D; d++) y[d] = 0.0f;
        for (int u = 0; u <= pos; u++) {
            const float p = s[u] / total, *vu = values + (size_t)u * D;
            for (int d = 0; d < D; d++) y[d] += p * vu[d];
        }
    }
}

/* The prompt: T tokens at positions start..start+T-1 through every layer at once (float32 matrices only),
 * writing their cache slots; logits of the last one. work holds T * (3 * dim + 3 * dim + ffn_dim) floats.
 * Returns 0, or -1 on bad arguments. */
int tl_prefill(const TlModel *m, const int32_t *tokens, int32_t T, int32_t start, float *k_cache, float *v_cache,
               int32_t capacity, float *logits, int32_t threads, float *work) {
    if (m->bf16 || T < 1 || start < 0 || start + T > capacity) return -1;
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= m->vocab) return -1;
    if (threads < 1) threads = 1;
    if (threads > m->max_threads) threads = m->max_threads;
    const int C = m->dim, H = m->n_heads, D = m->head_dim, Fd = m->ffn_dim;
    float *xs = work, *normed = xs + (size_t)T * C, *attn = normed + (size_t)T * C, *qkv = attn + (size_t)T * C;
    float *act = qkv + (size_t)T * 3 * C;
    const size_t layer_stride = (size_t)H * capacity * D;

#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int t = 0, nt = 1;
#endif
        int lo, hi;
        split(T, t, nt, &lo, &hi);
        for (int r = lo; r < hi; r++)
            for (int i = 0; i < C; i++)
                xs[(size_t)r * C + i] = m->tok_emb[(size_t)tokens[r] * C + i] + m->pos_emb[(size_t)(start + r) * C + i];
#pragma omp barrier
        for (int layer = 0; layer < m->n_layers; layer++) {
            split(T, t, nt, &lo, &hi);
            for (int r = lo; r < hi; r++) normalise(xs + (size_t)r * C, normed + (size_t)r * C, C, m->attn_eps[layer], 0);
#pragma omp barrier
            split(panels(3 * C), t, nt, &lo, &hi);
            gemm_panels(m->qkv[layer], normed, C, T, C, 3 * C, lo, hi, qkv, 3 * C, STORE);
#pragma omp barrier
            split(H, t, nt, &lo, &hi);
            for (int h = lo; h < hi; h++) {
                size_t head = layer * layer_stride + (size_t)h * capacity * D;
                attend_rows(m, h, T, start, qkv, attn, k_cache + head, v_cache + head);
            }
#pragma omp barrier
            split(panels(C), t, nt, &lo, &hi);
            gemm_panels(m->proj[layer], attn, C, T, C, C, lo, hi, xs, C, ACCUMULATE);
#pragma omp barrier
            split(T, t, nt, &lo, &hi);
            for (int r = lo; r < hi; r++) normalise(xs + (size_t)r * C, normed + (size_t)r * C, C, m->ffn_eps[layer], 0);
#pragma omp barrier
            split(panels(2 * Fd), t, nt, &lo, &hi);
            gemm_panels(m->gate_up[layer], normed, C, T, C, Fd, lo, hi, act, Fd, SWIGLU);
#pragma omp barrier
            split(panels(C), t, nt, &lo, &hi);
            gemm_panels(m->down[layer], act, Fd, T, Fd, C, lo, hi, xs, C, ACCUMULATE);
#pragma omp barrier
        }
        float *last = m->normed + (size_t)t * C;
        normalise(xs + (size_t)(T - 1) * C, last, C, m->final_eps, 0);
        split(panels(m->vocab), t, nt, &lo, &hi);
        gemv_store(m->head, 0, last, C, m->vocab, lo, hi, logits, 0, 1.0f);
    }
    return 0;
}

/* Memory for the weight panels: 2 MiB aligned and, on Linux, marked for transparent huge pages. The 10m preset
 * streams 41 MB per token; in 4 KiB pages that is 10,000 TLB entries per token, and its decode speed varied
 * 2x between processes with the pages' physical placement. Returns NULL on failure (the caller falls back to
 * ordinary memory). */
void *tl_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    size_t size = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, size) != 0) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, size, MADV_HUGEPAGE);
#endif
    memset(p, 0, size);
    return p;
}

void tl_free(void *p) { free(p); }

/* Lets the loader check it has the build of the source it expects. */
int tl_abi_version(void) { return 3; }
