/* detector's hot loops in C: the LSTM step's elementwise half and the scorer's Gaussian test,
 * each one vectorised pass where eager PyTorch or NumPy makes many.
 *
 * Compiled on the machine that runs it (detector/native/__init__.py) with -O3 -march=native, so
 * GCC or clang vectorises the inner loops with that CPU's widest vectors. LSTM activations use
 * one rational approximation of tanh (Eigen's, accurate to ~3e-7 over all of float32), with
 * sigmoid(x) = (1 + tanh(x / 2)) / 2: only multiplies, adds, one divide and two clamps, which
 * vectorise, where libm's expf/tanhf would not.
 */
#include <math.h>
#include <stdint.h>

static inline float tanh_approx(float x) {
    /* Past +-7.9, tanh is 1 in float32; the polynomials are fitted inside. */
    const float lim = 7.90531110763549805f;
    x = x > lim ? lim : x;
    x = x < -lim ? -lim : x;
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

static inline float sigmoid_approx(float x) { return 0.5f + 0.5f * tanh_approx(0.5f * x); }

/* tanh over n floats (for the tests' accuracy check). */
void detector_tanh(const float *restrict x, float *restrict y, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] = tanh_approx(x[k]);
}

/* One layer, B rows: gates (B, 4H) pre-activations in PyTorch's order [i, f, g, o]; the cell
 * gate's is multiplied by g_scale before its tanh (FusedStep's weights double it: 0.5);
 * c (B, H) is updated in place, h (B, H) written: c = f c + i tanh(g), h = o tanh(c).
 * Strides are in floats between rows; within a row values are contiguous. */
void detector_lstm_cell(const float *restrict gates, float *restrict c, float *restrict h,
                        int64_t batch, int64_t hidden, int64_t gate_stride, int64_t c_stride,
                        int64_t h_stride, float g_scale) {
    for (int64_t b = 0; b < batch; b++) {
        const float *g = gates + b * gate_stride;
        float *cb = c + b * c_stride;
        float *hb = h + b * h_stride;
        for (int64_t j = 0; j < hidden; j++) {
            const float i = sigmoid_approx(g[j]);
            const float f = sigmoid_approx(g[hidden + j]);
            const float u = tanh_approx(g_scale * g[2 * hidden + j]);
            const float o = sigmoid_approx(g[3 * hidden + j]);
            const float cn = f * cb[j] + i * u;
            cb[j] = cn;
            hb[j] = o * tanh_approx(cn);
        }
    }
}

/* BLAS's Fortran sgemm (column-major; all arguments by reference), found in torch's own library
 * at run time, so the step multiplies with the very routine torch.addmm uses. */
typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                         const float *, const float *, const int *, const float *, const int *,
                         const float *, float *, const int *);

/* out (B, N) += inp (B, K; rows ld_in apart) @ w (K, N), all row-major. Row-major C = A B is
 * column-major C' = B' A', hence the swapped operands. */
static void matmul_acc(sgemm_fn sgemm, const float *inp, int64_t ld_in, const float *w, int64_t k,
                       int64_t n, float *out, int64_t batch) {
    const int m_ = (int)n, n_ = (int)batch, k_ = (int)k, lda = (int)n, ldb = (int)ld_in,
              ldc = (int)n;
    const float one = 1.0f;
    sgemm("N", "N", &m_, &n_, &k_, &one, w, &lda, inp, &ldb, &one, out, &ldc);
}

static void fill_rows(float *out, const float *row, int64_t batch, int64_t n) {
    for (int64_t b = 0; b < batch; b++)
        for (int64_t j = 0; j < n; j++) out[b * n + j] = row[j];
}

/* One streaming step of a stacked LSTM with a dense head, for B streams, without the GIL:
 * x (B, n_in) contiguous; h, c (layers, B, H) updated in place, layer_stride and row_stride
 * floats apart (both tensors alike); w_ih[l] (in, 4H), w_hh[l] (H, 4H), bias[l] (4H) as
 * FusedStep keeps them (cell-gate columns scaled by 1 / g_scale); head_w (H, T), head_b (T);
 * gates a (block, 4H) scratch buffer; out (B, T) the forecast (+ x[:, :T] when residual).
 *
 * Streams go through every layer in blocks of `block` rows, so that a block's gates stay in
 * the core's cache between the two matmuls that write them and the cell that reads them. */
void detector_lstm_step(void *sgemm_ptr, int64_t layers, int64_t batch, int64_t hidden,
                        int64_t n_in, int64_t n_out, const float *x, const float *const *w_ih,
                        const float *const *w_hh, const float *const *bias, const float *head_w,
                        const float *head_b, float *h, float *c, int64_t layer_stride,
                        int64_t row_stride, float *gates, float *out, int64_t residual,
                        float g_scale, int64_t block) {
    sgemm_fn sgemm = (sgemm_fn)sgemm_ptr;
    const int64_t g4 = 4 * hidden;
    for (int64_t b0 = 0; b0 < batch; b0 += block) {
        const int64_t nb = batch - b0 < block ? batch - b0 : block;
        const float *xb = x + b0 * n_in;
        float *hb = h + b0 * row_stride, *cb = c + b0 * row_stride, *ob = out + b0 * n_out;
        for (int64_t l = 0; l < layers; l++) {
            const float *inp = l == 0 ? xb : hb + (l - 1) * layer_stride;
            fill_rows(gates, bias[l], nb, g4);
            matmul_acc(sgemm, inp, l == 0 ? n_in : row_stride, w_ih[l], l == 0 ? n_in : hidden,
                       g4, gates, nb);
            matmul_acc(sgemm, hb + l * layer_stride, row_stride, w_hh[l], hidden, g4, gates, nb);
            detector_lstm_cell(gates, cb + l * layer_stride, hb + l * layer_stride, nb, hidden,
                               g4, row_stride, row_stride, g_scale);
        }
        fill_rows(ob, head_b, nb, n_out);
        matmul_acc(sgemm, hb + (layers - 1) * layer_stride, row_stride, head_w, hidden, n_out,
                   ob, nb);
        if (residual)
            for (int64_t b = 0; b < nb; b++)
                for (int64_t j = 0; j < n_out; j++) ob[b * n_out + j] += xb[b * n_in + j];
    }
}

/* One EWMA Gaussian test of the scorer (detector/scoring.py, GaussianScorer._gaussian) in one
 * pass instead of ~17 NumPy passes, for B rows of D values, in float64:
 *   z = (x - mean) / sqrt(var), 0 where x is missing (NaN); z2 = z^2 (B, D); d2 = sum z2 (B,);
 *   dof = D - missing (B,); then, with the deviation clipped at `clip` sigmas,
 *   mean += a dev, var = max((var + a dev^2)(1 - a), 1e-12), a = alpha[b].
 * The statistics are slab rows: rows[b] when rows is given, else row0 + b; ld_s floats apart. */
void detector_gaussian(const double *restrict x, int64_t ld_x, double *restrict mean,
                       double *restrict var, const int64_t *restrict rows, int64_t row0,
                       int64_t ld_s, int64_t batch, int64_t dim, const double *restrict alpha,
                       double clip, double *restrict z2, double *restrict d2,
                       int64_t *restrict dof) {
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const double *xb = x + b * ld_x;
        double *m = mean + r * ld_s, *v = var + r * ld_s, *zb = z2 + b * dim;
        const double a = alpha[b], keep = 1.0 - a;
        for (int64_t j = 0; j < dim; j++) { /* no reductions here: this loop vectorises */
            const double sd = sqrt(v[j]);
            double z = (xb[j] - m[j]) / sd;
            z = xb[j] != xb[j] ? 0.0 : z;
            zb[j] = z * z;
            double dev = z > clip ? clip : z;
            dev = dev < -clip ? -clip : dev;
            dev *= sd;
            m[j] += a * dev;
            double sq = dev * dev;
            sq *= a;
            const double nv = (v[j] + sq) * keep;
            v[j] = nv > 1e-12 ? nv : 1e-12;
        }
        double acc[4] = {0.0, 0.0, 0.0, 0.0};
        int64_t missing = 0, j = 0;
        for (; j + 4 <= dim; j += 4)
            for (int k = 0; k < 4; k++) acc[k] += zb[j + k];
        for (; j < dim; j++) acc[0] += zb[j];
        for (j = 0; j < dim; j++) missing += xb[j] != xb[j];
        d2[b] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        dof[b] = dim - missing;
    }
}

/* The scorer's repeats test (GaussianScorer._repeats) in one call: per target, the run of
 * readings equal to the one before (run -1: no previous reading yet; a missing reading, NaN,
 * neither extends nor breaks it), its log10 p = run * log10(max(rate, floor)) saturated at
 * `sat`, and the repeat rate's EWMA at alpha[b]. Adds -2 ln p to z2 (the target's share of the
 * evidence) and writes each row's least log10 p to least[b]. The three slabs are float32
 * (capacity, dim), C order: readings are compared as float32, the precision the engine's
 * windows keep (one beyond its range is missing); a run is counted in floats so the loops
 * vectorise, and the evidence is computed in doubles. rows as in detector_gaussian. */
void detector_repeats(const double *restrict x, int64_t ld_x, float *restrict last,
                      float *restrict run, float *restrict rate,
                      const int64_t *restrict rows, int64_t row0, int64_t batch, int64_t dim,
                      const double *restrict alpha, double floor_rate, double sat,
                      double *restrict z2, double *restrict least) {
    const double to_ln = -2.0 * 2.302585092994046; /* -2 ln(10) */
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const double *xb = x + b * ld_x;
        float *l = last + r * dim, *q = rate + r * dim, *n = run + r * dim;
        double *zb = z2 + b * dim;
        const double a = alpha[b];
        /* Three passes over one row (it stays in L1): most readings repeat nothing, so the
         * first two are branch-free and vectorise, and only rows with a repeat pay for log10. */
        int hits = 0;
        for (int64_t j = 0; j < dim; j++) hits |= (n[j] >= 0.0f) & ((float)xb[j] == l[j]);
        double lowest = 0.0;
        if (hits) { /* evidence from the rates before this reading, as in NumPy */
            for (int64_t j = 0; j < dim; j++) {
                if (!(n[j] >= 0.0f && (float)xb[j] == l[j])) continue;
                const double qj = q[j] > floor_rate ? (double)q[j] : floor_rate;
                double lp = ((double)n[j] + 1.0) * log10(qj);
                lp = lp > sat ? lp : sat;
                zb[j] += to_ln * lp;
                lowest = lp < lowest ? lp : lowest;
            }
        }
        for (int64_t j = 0; j < dim; j++) {
            const float v = (float)xb[j], was = n[j];
            const int present = isfinite(v); /* beyond float32's range: missing, as NaN is */
            const int same = (was >= 0.0f) & (v == l[j]); /* l is finite: implies present */
            n[j] = same ? was + 1.0f : (present ? 0.0f : was);
            q[j] = present ? (float)(q[j] + a * ((same ? 1.0 : 0.0) - q[j])) : q[j];
            l[j] = present ? v : l[j];
        }
        least[b] = lowest;
    }
}

/* The scorer's relations test (GaussianScorer._relations) in one call: per row, the
 * Mahalanobis distance d2 of the reading from the stream's own mean under its own covariance,
 * regularised as A = cov + (ridge diag(cov) + floor) I (solved by Cholesky; dim <= 64), and
 * each target's share max(d_j (A^-1 d)_j, 0) added to z2 once the row has seen `warmup`
 * readings (else d2[b] = -1: no evidence yet; also -1 for a reading with a missing value,
 * which neither scores nor updates). Then, at a = 1 / min(n + 1 + prior, horizon), with the
 * deviation shrunk to Mahalanobis length sqrt(c2) at most: mean += a dev,
 * cov = (cov + a dev dev^T)(1 - a), n += 1, in doubles. Slabs are contiguous: mean
 * (cap, dim) doubles, cov (cap, dim (dim + 1) / 2) floats, the lower triangle packed by rows
 * (element (i, j), j <= i, at i (i + 1) / 2 + j; floats: an EWMA needs no more), n (cap,);
 * rows as in detector_gaussian. Unless `white` is NULL, it gets each row's whitened innovation
 * L^-1 d (B, dim), from before the update (NaN for a reading with a missing value). */
void detector_relations(const double *restrict x, int64_t ld_x, double *restrict mean,
                        float *restrict cov, int64_t *restrict count,
                        const int64_t *restrict rows, int64_t row0, int64_t batch, int64_t dim,
                        double prior, double horizon, double ridge, double floor_var, double c2,
                        int64_t warmup, double *restrict z2, double *restrict d2,
                        double *restrict white) {
    double low[64 * 64], d[64], y[64]; /* 32 KiB of stack at most */
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const double *xb = x + b * ld_x;
        double *m = mean + r * dim, *zb = z2 + b * dim;
        float *c = cov + r * (dim * (dim + 1) / 2);
        int present = 1;
        for (int64_t j = 0; j < dim; j++) present &= xb[j] == xb[j];
        if (!present) {
            d2[b] = -1.0;
            if (white)
                for (int64_t j = 0; j < dim; j++) white[b * dim + j] = NAN;
            continue;
        }
        for (int64_t j = 0; j < dim; j++) d[j] = xb[j] - m[j];
        for (int64_t i = 0; i < dim; i++) { /* Cholesky of A, lower triangle */
            const float *ci = c + i * (i + 1) / 2; /* row i of the packed triangle */
            for (int64_t j = 0; j <= i; j++) {
                double acc = (double)ci[j];
                if (i == j) acc += ridge * (double)ci[i] + floor_var;
                for (int64_t k = 0; k < j; k++) acc -= low[i * dim + k] * low[j * dim + k];
                if (i == j)
                    low[i * dim + i] = sqrt(acc > floor_var ? acc : floor_var);
                else
                    low[i * dim + j] = acc / low[j * dim + j];
            }
        }
        double dist = 0.0;
        for (int64_t i = 0; i < dim; i++) { /* L y = d */
            double acc = d[i];
            for (int64_t k = 0; k < i; k++) acc -= low[i * dim + k] * y[k];
            y[i] = acc / low[i * dim + i];
            dist += y[i] * y[i];
        }
        if (white)
            for (int64_t j = 0; j < dim; j++) white[b * dim + j] = y[j];
        const int64_t n = count[r];
        if (n >= warmup) {
            for (int64_t i = dim - 1; i >= 0; i--) { /* L^T z = y, z in y */
                double acc = y[i];
                for (int64_t k = i + 1; k < dim; k++) acc -= low[k * dim + i] * y[k];
                y[i] = acc / low[i * dim + i];
            }
            for (int64_t j = 0; j < dim; j++) {
                const double share = d[j] * y[j];
                zb[j] += share > 0.0 ? share : 0.0;
            }
            d2[b] = dist;
        } else {
            d2[b] = -1.0;
        }
        const double pace = (double)n + 1.0 + prior;
        const double a = 1.0 / (pace < horizon ? pace : horizon), keep = 1.0 - a;
        const double w = dist > c2 ? sqrt(c2 / dist) : 1.0;
        for (int64_t j = 0; j < dim; j++) d[j] *= w;
        for (int64_t j = 0; j < dim; j++) m[j] += a * d[j];
        for (int64_t i = 0, k = 0; i < dim; i++)
            for (int64_t j = 0; j <= i; j++, k++)
                c[k] = (float)(((double)c[k] + a * d[i] * d[j]) * keep);
        count[r] = n + 1;
    }
}

/* The scorer's sustained test (GaussianScorer._sustained) in one pass, for B rows of D readings;
 * its state is float32 slab rows (rows[b], or row0 + b when rows is NULL), computed in doubles:
 *   smooth += (x - smooth) / memory, that move clamped to +-max_step sqrt(var);
 *   z2 = (smooth - mean)^2 / var (0 where x is missing);
 *   then, with z2 clipped at clip^2 and dev its signed root times sqrt(var),
 *   mean += a dev, var = (var + a v var)(1 - a), a = alpha[b], with v = z2 up to clip^2 and
 *   v = 1 + beyond (clip^2 - 1) beyond it (beyond = 1: the clipped z2).
 * Writes z2 (B, D) and each row's largest z2 to zmax (B,). A missing value changes nothing. */
void detector_sustained(const double *restrict x, int64_t ld_x, float *restrict smooth,
                        float *restrict mean, float *restrict var, const int64_t *restrict rows,
                        int64_t row0, int64_t batch, int64_t dim, double memory,
                        double max_step, const double *restrict alpha, double clip,
                        double beyond, double *restrict z2, double *restrict zmax) {
    const double c2 = clip * clip, far = 1.0 + beyond * (c2 - 1.0);
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const double *xb = x + b * ld_x;
        float *s = smooth + r * dim, *m = mean + r * dim, *v = var + r * dim;
        double *zb = z2 + b * dim, top = 0.0;
        const double a = alpha[b];
        for (int64_t j = 0; j < dim; j++) {
            const double xj = xb[j];
            if (xj != xj) {
                zb[j] = 0.0;
                continue;
            }
            const double mj = m[j], vj = v[j], cap = max_step * sqrt(vj);
            const double move = (xj - (double)s[j]) / memory;
            const double sm = (double)s[j] + (move > cap ? cap : move < -cap ? -cap : move);
            const double dev = sm - mj, q = dev * dev / vj;
            const double c = q < c2 ? q : c2, step = sqrt(c * vj);
            zb[j] = q;
            top = q > top ? q : top;
            s[j] = (float)sm;
            m[j] = (float)(mj + a * (dev > 0.0 ? step : dev < 0.0 ? -step : 0.0));
            v[j] = (float)((vj + a * (q < c2 ? q : far) * vj) * (1.0 - a));
        }
        zmax[b] = top;
    }
}

/* The engine's per-reading scaling, one pass each (NumPy makes two to four, with temporaries
 * that wide video waves pay for in page faults). Slab rows (offset, scale) are rows[b], or
 * row0 + b when rows is NULL, ld_s doubles apart; the first `dim` columns are used. */

/* out (B, dim) float32 = (x - offset) / scale, clamped to +-zmax: the model's input. */
void detector_scale(const double *restrict x, int64_t ld_x, const double *restrict offset,
                    const double *restrict scale, const int64_t *restrict rows, int64_t row0,
                    int64_t ld_s, int64_t batch, int64_t dim, double zmax, float *restrict out) {
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const double *xb = x + b * ld_x, *o = offset + r * ld_s, *s = scale + r * ld_s;
        float *ob = out + b * dim;
        for (int64_t j = 0; j < dim; j++) {
            double z = (xb[j] - o[j]) / s[j];
            z = z > zmax ? zmax : z;
            z = z < -zmax ? -zmax : z;
            ob[j] = (float)z;
        }
    }
}

/* out (B, dim) float64 = f * scale + offset: scaled forecasts (float32) in original units. */
void detector_unscale(const float *restrict f, int64_t ld_f, const double *restrict offset,
                      const double *restrict scale, const int64_t *restrict rows, int64_t row0,
                      int64_t ld_s, int64_t batch, int64_t dim, double *restrict out) {
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const float *fb = f + b * ld_f;
        const double *o = offset + r * ld_s, *s = scale + r * ld_s;
        double *ob = out + b * dim;
        for (int64_t j = 0; j < dim; j++) ob[j] = (double)fb[j] * s[j] + o[j];
    }
}

/* err = (x - forecast) / scale and level = (x - offset) / scale, (B, dim) float64 each: the
 * scorer's two inputs, in scaled units. */
void detector_errors(const double *restrict x, int64_t ld_x, const double *restrict forecast,
                     const double *restrict offset, const double *restrict scale,
                     const int64_t *restrict rows, int64_t row0, int64_t ld_s, int64_t batch,
                     int64_t dim, double *restrict err, double *restrict level) {
    for (int64_t b = 0; b < batch; b++) {
        const int64_t r = rows ? rows[b] : row0 + b;
        const double *xb = x + b * ld_x, *fb = forecast + b * dim;
        const double *o = offset + r * ld_s, *s = scale + r * ld_s;
        double *eb = err + b * dim, *lb = level + b * dim;
        for (int64_t j = 0; j < dim; j++) {
            eb[j] = (xb[j] - fb[j]) / s[j];
            lb[j] = (xb[j] - o[j]) / s[j];
        }
    }
}
