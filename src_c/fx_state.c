/* fx_state.c -- the ISA-free row-state code that is compiled once, without ISA flags. */
#include <math.h>

#include "fx_common.h"

static inline double fx_stats_scale(double m, double M) { return m > -INFINITY ? exp(m - M) : 0.0; }

/* fx_common.h */
void fx_tstate_fold(fx_tstate *a, const fx_tstate *b)
{
    const double Mx = b->mx > a->mx ? b->mx : a->mx, My = b->my > a->my ? b->my : a->my;
    const int fin_x = Mx > -INFINITY && Mx < INFINITY, fin_y = My > -INFINITY && My < INFINITY;
    if (fin_x && fin_y) {
        const double ga = fx_stats_scale(a->my, My), gb = fx_stats_scale(b->my, My);
        double w = 0.0;
        if (ga != 0.0) w += ga * (a->w + a->sy * ((a->my - My) - (fx_stats_h(a->mx) - Mx)));
        if (gb != 0.0) w += gb * (b->w + b->sy * ((b->my - My) - (fx_stats_h(b->mx) - Mx)));
        a->w = w;
    } else {
        a->w += b->w;  /* not used: KL is NaN, or +inf (kinf) */
    }
    if (fin_x) {
        const double fa = fx_stats_scale(a->mx, Mx), fb = fx_stats_scale(b->mx, Mx);
        double s = 0.0, u = 0.0;
        if (fa != 0.0) { s += fa * a->sx; u += fa * (a->ux + (a->mx - Mx) * a->sx); }
        if (fb != 0.0) { s += fb * b->sx; u += fb * (b->ux + (b->mx - Mx) * b->sx); }
        a->sx = s;
        a->ux = u;
    } else {
        a->sx += b->sx;
        a->ux += b->ux;
    }
    if (fin_y) {
        const double ga = fx_stats_scale(a->my, My), gb = fx_stats_scale(b->my, My);
        a->sy = (ga != 0.0 ? ga * a->sy : 0.0) + (gb != 0.0 ? gb * b->sy : 0.0);
    } else {
        a->sy += b->sy;
    }
    if (b->mx > a->mx) a->ix = b->ix;
    if (b->my > a->my) a->iy = b->iy;
    a->mx = Mx;
    a->my = My;
    a->nanx |= b->nanx;
    a->nany |= b->nany;
    a->kinf |= b->kinf;
}

