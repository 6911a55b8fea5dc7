/* Nearby search and JSON rendering over the in-memory fleet index: the hot loop of
 * `GET /v1/chargers/nearby`, in C because per-request numpy calls cost more than the work.
 *
 * Same algorithm and arrays as the numpy reference (app/discovery/search.py);
 * tests/discovery/test_kernel.py checks the two agree on random fleets and queries.
 * Built at install time into the extension module app.discovery._nearby by cffi
 * (app/discovery/kernel_build.py, run by `make`'s install step); the structs are declared
 * once, in nearby.h. Calls come from the event loop's thread only (the index's scratch
 * buffers and `sorted_buf` below are shared).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nearby.h"

static const double A = 6378137.0;
static const double F = 1 / 298.257223563;
static const double R_MEAN = 6371008.8;
static const uint8_t AVAILABLE = 0;

static void ecef(double lat, double lon, double out[3]) {
    const double e2 = F * (2 - F);
    double phi = lat * M_PI / 180.0, lam = lon * M_PI / 180.0;
    double s = sin(phi);
    double n = A / sqrt(1.0 - e2 * s * s);
    double c = n * cos(phi);
    out[0] = c * cos(lam);
    out[1] = c * sin(lam);
    out[2] = n * (1.0 - e2) * s;
}

static int64_t lower_bound(const int64_t *a, int64_t n, int64_t key) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < key) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Sites within radius_m, in the grid cells covering the disc's bounding box. */
static int64_t collect(const Index *ix, const double p0[3], double lat, double lon, double radius_m) {
    double dlat = radius_m / 110574.0;
    double lat_lo = fmax(-90.0, lat - dlat), lat_hi = fmin(90.0, lat + dlat);
    double m = fmin(89.99, fmax(fabs(lat_lo), fabs(lat_hi)));
    double dlon = radius_m / (111319.0 * cos(m * M_PI / 180.0));
    int64_t cy0 = (int64_t)floor((lat_lo + 90.0) / ix->cell_deg);
    int64_t cy1 = (int64_t)floor((lat_hi + 90.0) / ix->cell_deg);
    int64_t spans[2][2];
    int nspans;
    if (dlon >= 180.0) {
        spans[0][0] = 0; spans[0][1] = ix->nx - 1; nspans = 1;
    } else {
        int64_t cx0 = (int64_t)floor((lon - dlon + 180.0) / ix->cell_deg);
        int64_t cx1 = (int64_t)floor((lon + dlon + 180.0) / ix->cell_deg);
        if (cx0 < 0) {
            spans[0][0] = cx0 + ix->nx; spans[0][1] = ix->nx - 1;
            spans[1][0] = 0; spans[1][1] = cx1; nspans = 2;
        } else if (cx1 >= ix->nx) {
            spans[0][0] = cx0; spans[0][1] = ix->nx - 1;
            spans[1][0] = 0; spans[1][1] = cx1 - ix->nx; nspans = 2;
        } else {
            spans[0][0] = cx0; spans[0][1] = cx1; nspans = 1;
        }
    }
    const double k = 1.0 / (24.0 * R_MEAN * R_MEAN);
    int64_t n = 0;
    for (int64_t cy = cy0; cy <= cy1; cy++) {
        for (int sp = 0; sp < nspans; sp++) {
            int64_t lo = lower_bound(ix->site_key, ix->n_sites, cy * ix->nx + spans[sp][0]);
            int64_t hi = lower_bound(ix->site_key, ix->n_sites, cy * ix->nx + spans[sp][1] + 1);
            for (int64_t s = lo; s < hi; s++) {
                const double *p = ix->site_xyz + 3 * s;
                double dx = p[0] - p0[0], dy = p[1] - p0[1], dz = p[2] - p0[2];
                double c = sqrt(dx * dx + dy * dy + dz * dz);
                double d = c * (1.0 + c * c * k);
                if (d <= radius_m) {
                    ix->cand_site[n] = s;
                    ix->cand_dist[n] = d;
                    n++;
                }
            }
        }
    }
    return n;
}

/* Candidates are ordered by (distance, site). Only the nearest few are ever needed, so
 * instead of sorting all of them: move the k smallest to the front (quickselect), sort
 * those (insertion sort), scan; repeat on the rest only if the scan found too few. */
typedef struct { double d; int64_t s; } Cand;

static inline int less(const Cand *x, const Cand *y) {
    return x->d < y->d || (x->d == y->d && x->s < y->s);
}

static inline void swap(Cand *a, Cand *b) { Cand t = *a; *a = *b; *b = t; }

/* Partially order c[0..n) so that c[0..k) holds the k smallest (in any order). */
static void select_k(Cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        /* median of three as pivot, moved to hi */
        if (less(&c[mid], &c[lo])) swap(&c[mid], &c[lo]);
        if (less(&c[hi], &c[lo])) swap(&c[hi], &c[lo]);
        if (less(&c[mid], &c[hi])) swap(&c[mid], &c[hi]);
        Cand pivot = c[hi];
        int64_t store = lo;
        for (int64_t i = lo; i < hi; i++)
            if (less(&c[i], &pivot)) swap(&c[i], &c[store++]);
        swap(&c[store], &c[hi]);
        if (store == k - 1 || store == k) return;
        if (store < k) lo = store + 1; else hi = store - 1;
    }
}

static void insertion_sort(Cand *c, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        Cand x = c[i];
        int64_t j = i - 1;
        while (j >= 0 && less(&x, &c[j])) { c[j + 1] = c[j]; j--; }
        c[j + 1] = x;
    }
}

static inline int matches(const Index *ix, const Query *q, int64_t j) {
    if (!ix->charger_visible[ix->conn_charger[j]]) return 0;
    if (q->connector_type >= 0 && ix->conn_type[j] != q->connector_type) return 0;
    if (ix->conn_power_w[j] < q->min_power_w) return 0;
    if (q->available_only && ix->conn_status[j] != AVAILABLE) return 0;
    return 1;
}

static Cand *sorted_buf = NULL;
static int64_t sorted_cap = 0;

static int64_t search_disc(const Index *ix, const Query *q, const double p0[3], double r,
                           int64_t *out_site, double *out_dist, int64_t *out_count) {
    int64_t n = collect(ix, p0, q->lat, q->lon, r);
    if (n > sorted_cap) {
        free(sorted_buf);
        sorted_cap = n * 2;
        sorted_buf = malloc(sizeof(Cand) * sorted_cap);
        if (!sorted_buf) { sorted_cap = 0; return -1; }
    }
    for (int64_t i = 0; i < n; i++) {
        sorted_buf[i].d = ix->cand_dist[i];
        sorted_buf[i].s = ix->cand_site[i];
    }
    int64_t hits = 0, done = 0, chunk = 2 * q->limit + 16;
    while (done < n && hits < q->limit) {
        int64_t k = chunk < n - done ? chunk : n - done;
        if (k < n - done) select_k(sorted_buf + done, n - done, k);
        insertion_sort(sorted_buf + done, k);
        for (int64_t i = done; i < done + k && hits < q->limit; i++) {
            int64_t s = sorted_buf[i].s, count = 0;
            for (int64_t j = ix->conn_start[s]; j < ix->conn_end[s]; j++)
                count += matches(ix, q, j);
            if (count) {
                out_site[hits] = s;
                out_dist[hits] = sorted_buf[i].d;
                out_count[hits] = count;
                hits++;
            }
        }
        done += k;
        chunk *= 4;
    }
    return hits;
}

/* The nearest `limit` sites with a matching live connector: widens a disc from 1 km
 * (×4) until `limit` matches lie inside it or the radius is reached. Returns the number
 * of hits written, or -1 when out of memory. */
int64_t vw_search(const Index *ix, const Query *q, int64_t *out_site, double *out_dist,
                  int64_t *out_count) {
    double p0[3];
    ecef(q->lat, q->lon, p0);
    double r = fmin(q->radius_m, 1000.0);
    for (;;) {
        int64_t hits = search_disc(ix, q, p0, r, out_site, out_dist, out_count);
        if (hits < 0 || hits >= q->limit || r >= q->radius_m) return hits;
        r = fmin(q->radius_m, r * 4);
    }
}

/* Decimal text of v ≥ 0 into buf; returns its length. */
static int fmt_int(char *buf, int64_t v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

/* A distance (0 ≤ d < 1e15) with one decimal, rounded half away from zero. */
static int fmt_tenths(char *buf, double d) {
    int64_t t = (int64_t)llround(d * 10.0);
    int n = fmt_int(buf, t / 10);
    buf[n++] = '.';
    buf[n++] = (char)('0' + t % 10);
    return n;
}

#define PUT(ptr, len) do { memcpy(out + at, (ptr), (size_t)(len)); at += (len); } while (0)
#define LIT(s) PUT(s, sizeof(s) - 1)

/* Render the hits as comma-separated `site` objects of API.md into `out`; each site is
 * closed by its tail: all by `tails` when `shared`, else each by the next of the
 * NUL-separated `tails`. Returns the length written, or -(bytes needed) when `cap` is
 * too small. */
int64_t vw_render(const Index *ix, const Query *q, int64_t n_hits, const int64_t *site,
                  const double *dist, const int64_t *count, const char *tails_text,
                  int64_t tails_len, int32_t shared, uint8_t *out, int64_t cap) {
    const uint8_t *tails = (const uint8_t *)tails_text;
    int64_t need = shared ? tails_len * n_hits : tails_len;
    for (int64_t i = 0; i < n_hits; i++) {
        int64_t s = site[i];
        /* 96 ≥ the site's own keys and numbers; 256 ≥ one connector record */
        need += ix->static_off[s + 1] - ix->static_off[s] + 96 + count[i] * 256;
    }
    if (need > cap) return -need;
    const uint8_t *tail = tails, *tails_end = tails + tails_len;
    int64_t at = 0;
    char num[48];
    for (int64_t i = 0; i < n_hits; i++) {
        int64_t s = site[i];
        if (i) out[at++] = ',';
        PUT(ix->static_blob + ix->static_off[s], ix->static_off[s + 1] - ix->static_off[s]);
        int64_t available = 0;
        for (int64_t j = ix->conn_start[s]; j < ix->conn_end[s]; j++)
            if (matches(ix, q, j) && ix->conn_status[j] == AVAILABLE) available++;
        int len = fmt_tenths(num, dist[i]);
        LIT(",\"distance_m\":");
        PUT(num, len);
        len = fmt_int(num, available);
        LIT(",\"available_count\":");
        PUT(num, len);
        LIT(",\"connectors\":[");
        int first = 1;
        for (int64_t j = ix->conn_start[s]; j < ix->conn_end[s]; j++) {
            if (!matches(ix, q, j)) continue;
            if (!first) out[at++] = ',';
            first = 0;
            LIT("{\"connector_id\":\"");
            PUT(ix->conn_uuid + 36 * j, 36);
            LIT("\",\"charger_id\":\"");
            PUT(ix->charger_uuid + 36 * (int64_t)ix->conn_charger[j], 36);
            LIT("\",\"connector_no\":");
            len = fmt_int(num, ix->conn_no[j] < 0 ? 0 : ix->conn_no[j]);
            PUT(num, len);
            LIT(",\"type\":");
            PUT(ix->type_text + ix->type_off[ix->conn_type[j]],
                ix->type_off[ix->conn_type[j] + 1] - ix->type_off[ix->conn_type[j]]);
            LIT(",\"power_kw\":");
            int32_t pc = ix->conn_power_code[j];
            PUT(ix->power_text + ix->power_off[pc], ix->power_off[pc + 1] - ix->power_off[pc]);
            LIT(",\"status\":");
            PUT(ix->status_text + ix->status_off[ix->conn_status[j]],
                ix->status_off[ix->conn_status[j] + 1] - ix->status_off[ix->conn_status[j]]);
            out[at++] = '}';
        }
        out[at++] = ']';
        if (shared) {
            PUT(tails, tails_len);
        } else {
            const uint8_t *end = memchr(tail, 0, (size_t)(tails_end - tail));
            if (!end) end = tails_end;
            PUT(tail, end - tail);
            tail = end < tails_end ? end + 1 : tails_end;
        }
    }
    return at;
}
