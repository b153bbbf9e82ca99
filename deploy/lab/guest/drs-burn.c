/*
 * drs-burn: the lab guest's workload (run by /init, statically linked).
 *
 * Reads from /proc/cmdline:
 *   drs.burn=PCT    CPU duty cycle in percent of each 100 ms period (0..100)
 *   drs.touch=MIB   MiB allocated once and kept dirty
 *   drs.dirty=MIBS  MiB per second re-written in the touched area (bounded so
 *                   that live migration converges; 0 = never re-dirty)
 * Writes "DRS-HB <counter> <unix time>" to stdout (the serial console) every second.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 100000000L
#define PAGE 4096L
#define EPOCH_NS 10000000000LL
/* What the guest's QEMU costs the host beyond the guest's own work (timers, main loop),
 * measured at about 1.0-1.5 % of a core: drs.burn is the guest's total, so aim lower. */
#define QEMU_OVERHEAD_PPM 12000L
#define CHUNK_ITERATIONS 20000

static volatile unsigned long sink;

static void chunk(void)
{
    for (int i = 0; i < CHUNK_ITERATIONS; i++)
        sink += (unsigned long)i * 2654435761UL;
}

static long param(const char *cmdline, const char *key, long dflt)
{
    const char *p = strstr(cmdline, key);
    if (!p)
        return dflt;
    return strtol(p + strlen(key), NULL, 10);
}

static long long now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void)
{
    char cmdline[4096] = "";
    FILE *f = fopen("/proc/cmdline", "r");
    if (f) {
        if (!fgets(cmdline, sizeof cmdline, f))
            cmdline[0] = 0;
        fclose(f);
    }
    long burn = param(cmdline, "drs.burn=", 0);
    long touch_mib = param(cmdline, "drs.touch=", 0);
    long dirty_mib_s = param(cmdline, "drs.dirty=", 0);
    if (burn < 0) burn = 0;
    if (burn > 100) burn = 100;

    long pages = touch_mib * (1024L * 1024L / PAGE);
    volatile unsigned char *mem = NULL;
    if (pages > 0) {
        mem = malloc((size_t)pages * PAGE);
        if (!mem) {
            printf("DRS-ERROR cannot allocate %ld MiB\n", touch_mib);
            pages = 0;
        } else {
            for (long i = 0; i < pages; i++)
                mem[i * PAGE] = 1;
        }
    }
    /* pages to re-dirty per 100 ms period */
    long dirty_per_period = dirty_mib_s * (1024L * 1024L / PAGE) / 10;
    long next_page = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    char clocksource[64] = "?";
    f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        if (fscanf(f, "%63s", clocksource) != 1)
            strcpy(clocksource, "?");
        fclose(f);
    }
    printf("DRS-READY burn=%ld touch=%ld dirty=%ld clocksource=%s\n", burn, touch_mib,
           dirty_mib_s, clocksource);

    unsigned long counter = 0;
    long long start = now_ns(CLOCK_MONOTONIC);
    long long next_hb = start;
    /*
     * Burn by host CPU, not by wall time: when the host is busy the vCPU thread is
     * descheduled while the guest clock runs on, so "spin for 20 ms" would burn less than
     * 20 ms of host CPU. A chunk that took more than 3x the fastest chunk was preempted:
     * it is charged the running average cost instead of its wall time. Budget a starved
     * period could not spend is carried over (up to one second) so the average holds.
     */
    long long best = 0, avg = 0, carry = 0;
    long long burn_ppm = burn * 10000L - QEMU_OVERHEAD_PPM;
    long long burn_ns = burn_ppm > 0 ? PERIOD_NS * burn_ppm / 1000000L : 0;
    long long epoch_end = start + EPOCH_NS;
    for (;;) {
        long long budget = burn_ns + carry;
        long long period_end = start + PERIOD_NS;
        for (long k = 0; k < dirty_per_period && pages > 0; k++) {
            mem[next_page * PAGE]++;
            next_page = (next_page + 1) % pages;
        }
        long long t = now_ns(CLOCK_MONOTONIC);
        while (budget > 0 && t < period_end) {
            long long t0 = t;
            chunk();
            t = now_ns(CLOCK_MONOTONIC);
            long long dt = t - t0;
            if (dt <= 0)
                continue;
            if (best == 0 || dt < best)
                best = dt;
            if (dt <= 3 * best) {
                avg = avg ? (avg * 15 + dt) / 16 : dt;
                budget -= dt;
            } else {
                budget -= avg ? avg : best;
            }
        }
        carry = budget > 0 ? budget : 0;
        if (carry > 10 * burn_ns)
            carry = 10 * burn_ns;
        if (t >= epoch_end) {  /* forget the old minimum now and then: TCG speed drifts */
            best = avg;
            epoch_end = t + EPOCH_NS;
        }
        if (t >= next_hb) {
            long long wall = now_ns(CLOCK_REALTIME);
            counter++;
            printf("DRS-HB %lu %lld.%06lld\n", counter, wall / 1000000000LL,
                   (wall % 1000000000LL) / 1000LL);
            next_hb += 1000000000LL;
            if (next_hb < t)  /* paused for a long time: do not burst */
                next_hb = t + 1000000000LL;
        }
        start += PERIOD_NS;
        if (start < t - PERIOD_NS)  /* fell behind (paused, starved): restart the cycle */
            start = t;
        struct timespec ts = {start / 1000000000LL, start % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    return 0;
}
