/* The nearby-search kernel's interface: shared by nearby.c and, through cffi's cdef, by
 * app/discovery/kernel.py, so the C compiler checks that both see the same structs
 * (cffi verifies every declared field's type and offset when it builds the module).
 *
 * Written in the subset cffi's cdef parses: no #include, no include guard; the includer
 * provides <stdint.h>. Field order is free; the Python side fills fields by name.
 */

typedef struct {
    /* sites, sorted by grid key */
    int64_t n_sites;
    const int64_t *site_key;
    const double *site_xyz; /* n_sites * 3, Earth-centred metres */
    const int64_t *conn_start;
    const int64_t *conn_end;
    const uint8_t *static_blob; /* pre-rendered `{"site_id":…,"timezone":"…"` */
    const int64_t *static_off;  /* n_sites + 1 */
    /* connectors */
    const int32_t *conn_charger;
    const uint8_t *conn_type;
    const uint8_t *conn_status;
    const int32_t *conn_power_w;
    const int32_t *conn_no;
    const int32_t *conn_power_code;
    const uint8_t *conn_uuid;    /* n * 36 */
    const uint8_t *charger_uuid; /* n_chargers * 36 */
    const uint8_t *charger_visible;
    /* text tables: JSON values by code */
    const uint8_t *type_text;
    const int64_t *type_off;
    const uint8_t *status_text;
    const int64_t *status_off;
    const uint8_t *power_text;
    const int64_t *power_off;
    /* grid */
    double cell_deg;
    int64_t nx;
    /* scratch, n_sites long each */
    int64_t *cand_site;
    double *cand_dist;
} Index;

typedef struct {
    double lat;
    double lon;
    double radius_m;
    int64_t limit;
    int32_t connector_type; /* -1: any */
    int32_t min_power_w;
    int32_t available_only;
} Query;

/* The nearest `limit` sites with a matching live connector; returns the number of hits
 * written, or -1 when out of memory. */
int64_t vw_search(const Index *ix, const Query *q, int64_t *out_site, double *out_dist,
                  int64_t *out_count);

/* The hits as comma-separated `site` objects of API.md; returns the length written, or
 * -(bytes needed) when `cap` is too small. */
int64_t vw_render(const Index *ix, const Query *q, int64_t n_hits, const int64_t *site,
                  const double *dist, const int64_t *count, const char *tails,
                  int64_t tails_len, int32_t shared, uint8_t *out, int64_t cap);
