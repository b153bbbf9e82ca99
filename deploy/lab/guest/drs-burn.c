/*
 * drs-burn: the lab guest's workload (run by /init, statically linked).
 *
 * Reads from /proc/cmdline:
 *   drs.burn=PCT    CPU duty cycle in percent of each 100 ms period (0..100)
 *   drs.touch=MIB   MiB allocated once and kept dirty
 *   drs.dirty=MIBS  MiB per second re-written in the touched area (bounded so
 *                   that live migration converges; 0 = never re-dirty)
 *   drs.hb_ms=MS    heartbeat period in ms (default 1000, at least 50)
 *   drs.corrupt_at_s=S  flip one word of the touched area after S seconds (proves the
 *                   self-check reports it; tests only)
 *   drs.disk=PATH   a data disk (the lab's /dev/vda) the guest writes continuously: at
 *                   start it reads the last write counter stored there and prints
 *                   "DRS-DISK-START <counter>", then every heartbeat stores counter + 1
 *                   with the time (O_DIRECT | O_DSYNC: on the disk when the line prints)
 * On a host, argv[1] replaces /proc/cmdline (tests run the burner outside a guest).
 * Writes "DRS-HB <counter> <unix time> <mem errors> <disk counter>" to stdout (the serial
 * console) every period; the disk counter is 0 without a disk.
 *
 * Memory self-check: every page of the touched area holds a pattern derived from its
 * index and its generation (how often it was rewritten). Re-dirtying a page first verifies
 * it, then writes the next generation over the whole page; a sweep verifies the whole
 * area every VERIFY_SWEEP_S seconds. A page whose contents are not what the guest last
 * wrote (memory lost or stale after a live migration) prints
 * "DRS-MEMERR page=<i> word=<k> want=<x> got=<y> gen=<g>" (at most MEMERR_LINES lines;
 * the heartbeat's third field counts every mismatch) and is rewritten.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define PERIOD_NS 100000000L
#define PAGE 4096L
#define EPOCH_NS 10000000000LL
/* What the guest's QEMU costs the host beyond the guest's own work (timers, main loop),
 * measured at about 1.0-1.5 % of a core: drs.burn is the guest's total, so aim lower. */
#define QEMU_OVERHEAD_PPM 12000L
#define CHUNK_ITERATIONS 20000
#define WORDS_PER_PAGE (PAGE / 8)
#define VERIFY_SWEEP_S 4
#define MEMERR_LINES 20

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

static unsigned long long mem_errors;

/* The value of word k of page i at generation g: distinct per page, word and generation. */
static inline unsigned long long pattern(long i, unsigned int g, long k)
{
    unsigned long long x = ((unsigned long long)i << 32) ^ g;
    x *= 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return x + (unsigned long long)k * 0xD1B54A32D192ED03ULL;
}

static void fill(unsigned long long *page, long i, unsigned int g)
{
    for (long k = 0; k < WORDS_PER_PAGE; k++)
        page[k] = pattern(i, g, k);
}

/* 1 if page i holds generation g; otherwise report the first bad word and rewrite it. */
static int verify(unsigned long long *page, long i, unsigned int g)
{
    for (long k = 0; k < WORDS_PER_PAGE; k++) {
        unsigned long long want = pattern(i, g, k);
        if (page[k] != want) {
            mem_errors++;
            if (mem_errors <= MEMERR_LINES)
                printf("DRS-MEMERR page=%ld word=%ld want=%016llx got=%016llx gen=%u\n", i, k,
                       want, page[k], g);
            fill(page, i, g);
            return 0;
        }
    }
    return 1;
}

/* The data disk: block 0 holds "DRS-DISK <counter> <unix time>\n" (a 4 KiB aligned
 * write, so the record is whole after a crash). */
static int disk_fd = -1;
static char *disk_block;
static unsigned long disk_counter;

static void disk_open(const char *cmdline)
{
    const char *p = strstr(cmdline, "drs.disk=");
    if (!p)
        return;
    char path[128];
    if (sscanf(p + strlen("drs.disk="), "%127s", path) != 1)
        return;
    for (int tries = 0; tries < 100 && disk_fd < 0; tries++) {  /* the driver binds async */
        disk_fd = open(path, O_RDWR | O_DIRECT | O_DSYNC);
        if (disk_fd < 0)
            usleep(50000);
    }
    if (disk_fd < 0 || posix_memalign((void **)&disk_block, 4096, 4096) != 0) {
        printf("DRS-ERROR cannot open the data disk %s\n", path);
        disk_fd = -1;
        return;
    }
    if (pread(disk_fd, disk_block, 4096, 0) == 4096)
        sscanf(disk_block, "DRS-DISK %lu", &disk_counter);
    printf("DRS-DISK-START %lu\n", disk_counter);
}

static void disk_write(long long wall_ns)
{
    if (disk_fd < 0)
        return;
    memset(disk_block, 0, 4096);
    snprintf(disk_block, 4096, "DRS-DISK %lu %lld\n", disk_counter + 1, wall_ns / 1000000000LL);
    if (pwrite(disk_fd, disk_block, 4096, 0) == 4096)
        disk_counter++;
}

int main(int argc, char **argv)
{
    char cmdline[4096] = "";
    FILE *f = fopen("/proc/cmdline", "r");
    if (argc > 1) {
        snprintf(cmdline, sizeof cmdline, "%s", argv[1]);
    } else if (f) {
        if (!fgets(cmdline, sizeof cmdline, f))
            cmdline[0] = 0;
    }
    if (f)
        fclose(f);
    long burn = param(cmdline, "drs.burn=", 0);
    long touch_mib = param(cmdline, "drs.touch=", 0);
    long dirty_mib_s = param(cmdline, "drs.dirty=", 0);
    if (burn < 0) burn = 0;
    if (burn > 100) burn = 100;

    long pages = touch_mib * (1024L * 1024L / PAGE);
    unsigned long long *mem = NULL;
    unsigned int *gen = NULL;
    if (pages > 0) {
        mem = malloc((size_t)pages * PAGE);
        gen = calloc((size_t)pages, sizeof *gen);
        if (!mem || !gen) {
            printf("DRS-ERROR cannot allocate %ld MiB\n", touch_mib);
            pages = 0;
        } else {
            for (long i = 0; i < pages; i++)
                fill(mem + i * WORDS_PER_PAGE, i, 0);
        }
    }
    /* pages to re-dirty and to verify per 100 ms period */
    long dirty_per_period = dirty_mib_s * (1024L * 1024L / PAGE) / 10;
    long verify_per_period = pages / (VERIFY_SWEEP_S * 10) + 1;
    long next_page = 0, next_verify = 0;
    long hb_ms = param(cmdline, "drs.hb_ms=", 1000);
    if (hb_ms < 50) hb_ms = 50;
    long long hb_ns = hb_ms * 1000000LL;
    long corrupt_at_s = param(cmdline, "drs.corrupt_at_s=", -1);

    setvbuf(stdout, NULL, _IOLBF, 0);
    char clocksource[64] = "?";
    f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        if (fscanf(f, "%63s", clocksource) != 1)
            strcpy(clocksource, "?");
        fclose(f);
    }
    printf("DRS-READY burn=%ld touch=%ld dirty=%ld hb_ms=%ld verify=on clocksource=%s\n", burn,
           touch_mib, dirty_mib_s, hb_ms, clocksource);
    disk_open(cmdline);

    unsigned long counter = 0;
    long long start = now_ns(CLOCK_MONOTONIC);
    long long t_start = start;
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
        long long t = now_ns(CLOCK_MONOTONIC);
        long long mem_t0 = t;
        for (long k = 0; k < dirty_per_period && pages > 0; k++) {
            unsigned long long *page = mem + next_page * WORDS_PER_PAGE;
            verify(page, next_page, gen[next_page]);
            gen[next_page]++;
            fill(page, next_page, gen[next_page]);
            next_page = (next_page + 1) % pages;
        }
        for (long k = 0; k < verify_per_period && pages > 0; k++) {
            verify(mem + next_verify * WORDS_PER_PAGE, next_verify, gen[next_verify]);
            next_verify = (next_verify + 1) % pages;
        }
        if (corrupt_at_s >= 0 && pages > 0 && t - t_start >= corrupt_at_s * 1000000000LL) {
            mem[(pages / 2) * WORDS_PER_PAGE + 7] ^= 1;
            corrupt_at_s = -1;
        }
        t = now_ns(CLOCK_MONOTONIC);
        /* the memory work is part of the guest's CPU: charge it to this period's burn */
        budget -= t - mem_t0;
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
            disk_write(wall);
            printf("DRS-HB %lu %lld.%06lld %llu %lu\n", counter, wall / 1000000000LL,
                   (wall % 1000000000LL) / 1000LL, mem_errors, disk_counter);
            next_hb += hb_ns;
            if (next_hb < t)  /* paused for a long time: do not burst */
                next_hb = t + hb_ns;
        }
        start += PERIOD_NS;
        if (start < t - PERIOD_NS)  /* fell behind (paused, starved): restart the cycle */
            start = t;
        struct timespec ts = {start / 1000000000LL, start % 1000000000LL};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
    return 0;
}
