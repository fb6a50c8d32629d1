/*
 * hog.c - mfa-hog, background CPU work scheduled like mfagate's KDF thread,
 * for the benchmark's scenario 3.
 *
 *     mfa-hog RATE SECONDS JOB_MS
 *
 * Runs RATE jobs a second for SECONDS, each JOB_MS of pure computation (no
 * memory beyond a few registers), at nice 19 with a 0.1 ms time slice: the
 * scheduling mfagate gives its argon2id thread (auth/auth.c
 * auth_kdf_thread_sched).  Beside the warm logins it shows what any
 * background CPU work of the cold stream's duty cycle costs their tail on
 * this machine, without argon2id's 19 MiB of memory traffic and without the
 * cold logins' own work at the backend.  Prints the jobs done on stderr.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define HOG_NICE 19
#define HOG_SLICE_NS 100000ULL

/* sched_setattr(2)'s argument (glibc has no wrapper). */
struct hog_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

static double
hog_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
hog_sched(void)
{
    struct hog_sched_attr a;

    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.sched_policy = SCHED_OTHER;
    a.sched_nice = HOG_NICE;
    a.sched_runtime = HOG_SLICE_NS;
    if (syscall(SYS_sched_setattr, 0, &a, 0) != 0 &&
        setpriority(PRIO_PROCESS, 0, HOG_NICE) != 0)
        perror("mfa-hog: nice");
}

int
main(int argc, char **argv)
{
    double rate, secs, job_s, t0;
    volatile uint64_t sink = 0;
    long jobs = 0;

    if (argc != 4 || (rate = atof(argv[1])) <= 0 || (secs = atof(argv[2])) <= 0 ||
        (job_s = atof(argv[3]) / 1e3) <= 0) {
        fprintf(stderr, "usage: mfa-hog RATE SECONDS JOB_MS\n");
        return 2;
    }
    hog_sched();
    t0 = hog_now();
    for (;;) {
        double due = t0 + (double)jobs / rate, start, left = due - hog_now();
        uint64_t x = (uint64_t)jobs;

        if (due - t0 >= secs)
            break;
        if (left > 0)
            usleep((useconds_t)(left * 1e6));
        start = hog_now();
        while (hog_now() - start < job_s) {
            for (int k = 0; k < 4096; k++)
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        }
        sink += x;
        jobs++;
    }
    fprintf(stderr, "mfa-hog: %ld jobs of %.1f ms in %.1f s\n", jobs, job_s * 1e3,
            hog_now() - t0);
    return 0;
}
