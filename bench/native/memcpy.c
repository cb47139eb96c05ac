/*
 * The native peer of `dmabuf-lab bench copy`: the same regimes as the
 * TypeScript side, measured with the C library's memcpy.
 *
 * Built at bench time by bench/native.ts (cc -O2) into build/native/memcpy
 * and run as a subprocess in the same run. It reads a spec on stdin, one
 * case per line, and prints one JSON object on stdout; progress goes to
 * stderr. Nothing here is tuned: it is the plain memcpy a C programmer would
 * write, on anonymous mmap'd memory like V8's wasm memory.
 *
 *   budget  TIME_MS MIN_SAMPLES WARMUP_MS MAX_SAMPLES
 *   contig  BYTES SRC_OFF DST_OFF BATCH       one memcpy per copy; src at 0
 *                                              (+SRC_OFF), dst at 128 MiB
 *                                              (+DST_OFF) of one region
 *   scatter POOL_PAGES PAGES SEED BATCH       linear -> 4 KiB pages
 *   gather  POOL_PAGES PAGES SEED BATCH       4 KiB pages -> linear
 *   tiny    WINDOW SEGMENTS MAX_LEN SEED BATCH  memcpy per segment
 *   threads BYTES THREADS COPIES              THREADS pthreads, each with its
 *                                              own src and dst mappings; one
 *                                              operation is a round between
 *                                              two barriers in which every
 *                                              thread memcpys BYTES COPIES
 *                                              times; samples are ns per copy
 *                                              of the aggregate (round time /
 *                                              (THREADS * COPIES))
 *
 * Random layouts come from mulberry32 seeded with SEED, drawn in the same
 * order as bench/copy.ts (pages: a partial Fisher-Yates shuffle of the pool's
 * page indices; tiny: len = 1 + r % MAX_LEN, then the source offset in the
 * window's lower half, then the destination offset in its upper half). Each
 * result carries an FNV-1a hash of the layout so the TypeScript side can
 * check that both sides copied the same thing.
 *
 * Each sample times BATCH operations (a copy, or a whole page list or
 * segment table) with CLOCK_MONOTONIC and records nanoseconds per operation.
 * Sampling stops when TIME_MS has passed and MIN_SAMPLES are taken, or at
 * MAX_SAMPLES.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u
#define CONTIG_DST (128u << 20)

static double budget_ms = 300, warmup_ms = 50;
static long min_samples = 10, max_samples = 20000;

static uint32_t rng_state;

static uint32_t mulberry32(void) {
  uint32_t t;
  rng_state += 0x6d2b79f5u;
  t = rng_state;
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return t ^ (t >> 14);
}

static uint32_t fnv(uint32_t h, uint32_t x) {
  return (h ^ x) * 16777619u;
}

/* A compiler barrier: the copies are observable, so none is dropped. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint8_t *map(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "memcpy-bench: cannot map %zu bytes\n", bytes);
    exit(2);
  }
  return p;
}

/* Fills memory with a non-zero pattern so that no read hits the zero page. */
static void touch(uint8_t *p, size_t bytes) {
  for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)(i * 131u + 7u);
}

enum kind { CONTIG, SCATTER, GATHER, TINY, THREADS };

/* The threads case: members copy between barriers, the main thread times rounds. */
struct team {
  pthread_barrier_t start, end;
  int stop;
  long copies;
  size_t bytes;
};

struct member {
  struct team *team;
  uint8_t *src, *dst;
  pthread_t id;
};

struct work {
  enum kind kind;
  uint8_t *src, *dst;       /* contig: the two ends; pages: linear, pool; tiny: base */
  size_t bytes;             /* contig */
  uint32_t *pages;          /* page indices */
  uint32_t *desc;           /* tiny: dst, src, len triples (offsets from base) */
  size_t count;
  struct team *team;        /* threads */
};

static void *member_main(void *arg) {
  struct member *m = arg;
  struct team *t = m->team;
  for (;;) {
    pthread_barrier_wait(&t->start);
    if (t->stop) break;
    for (long c = 0; c < t->copies; c++) {
      memcpy(m->dst, m->src, t->bytes);
      KEEP(m->dst);
    }
    pthread_barrier_wait(&t->end);
  }
  return NULL;
}

static void op(const struct work *w) {
  switch (w->kind) {
  case CONTIG:
    memcpy(w->dst, w->src, w->bytes);
    KEEP(w->dst);
    break;
  case SCATTER: /* src = linear, dst = pool */
    for (size_t i = 0; i < w->count; i++) {
      memcpy(w->dst + (size_t)w->pages[i] * PAGE, w->src + i * PAGE, PAGE);
      KEEP(w->dst);
    }
    break;
  case GATHER: /* src = pool, dst = linear */
    for (size_t i = 0; i < w->count; i++) {
      memcpy(w->dst + i * PAGE, w->src + (size_t)w->pages[i] * PAGE, PAGE);
      KEEP(w->dst);
    }
    break;
  case TINY: {
    const uint32_t *d = w->desc;
    uint8_t *base = w->src;
    for (size_t i = 0; i < w->count; i++, d += 3) {
      memcpy(base + d[0], base + d[1], d[2]);
      KEEP(base);
    }
    break;
  }
  case THREADS: /* one round: every member copies, the main thread waits at both barriers */
    pthread_barrier_wait(&w->team->start);
    pthread_barrier_wait(&w->team->end);
    break;
  }
}

/* Samples are ns per operation, divided further by `per` (copies in one operation). */
static void measure(const struct work *w, long batch, double per, const char *name, uint32_t hash, int first) {
  double *samples = malloc(sizeof(double) * (size_t)max_samples);
  long n = 0;
  double start = now_ns();
  do op(w); while (now_ns() - start < warmup_ms * 1e6);
  start = now_ns();
  while (n < max_samples && (n < min_samples || now_ns() - start < budget_ms * 1e6)) {
    double t0 = now_ns();
    for (long b = 0; b < batch; b++) op(w);
    samples[n++] = (now_ns() - t0) / (double)batch / per;
  }
  printf("%s\n  {\"case\": \"%s\", \"hash\": %u, \"batch\": %ld, \"samples\": [", first ? "" : ",", name, hash, batch);
  for (long i = 0; i < n; i++) printf(i ? ",%.2f" : "%.2f", samples[i]);
  printf("]}");
  fflush(stdout);
  free(samples);
}

static uint32_t *pick_pages(uint32_t pool_pages, uint32_t count, uint32_t seed, uint32_t *hash) {
  uint32_t *idx = malloc(sizeof(uint32_t) * pool_pages);
  for (uint32_t i = 0; i < pool_pages; i++) idx[i] = i;
  rng_state = seed;
  *hash = 2166136261u;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t j = i + mulberry32() % (pool_pages - i);
    uint32_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
    *hash = fnv(*hash, idx[i]);
  }
  return idx;
}

int main(void) {
  char line[512], name[512];
  uint8_t *contig = NULL;
  size_t contig_bytes = 0;
  int first = 1, cases = 0;
  printf("{\"results\": [");
  while (fgets(line, sizeof line, stdin)) {
    char kind[16];
    double a = 0, b = 0, c = 0, d = 0, e = 0;
    line[strcspn(line, "\r\n")] = 0;
    if (sscanf(line, "%15s %lf %lf %lf %lf %lf", kind, &a, &b, &c, &d, &e) < 1) continue;
    snprintf(name, sizeof name, "%s", line);
    if (strcmp(kind, "budget") == 0) {
      budget_ms = a; min_samples = (long)b; warmup_ms = c; max_samples = (long)d;
      continue;
    }
    cases++;
    fprintf(stderr, "native: %s\n", line);
    struct work w = {0};
    if (strcmp(kind, "contig") == 0) {
      size_t need = CONTIG_DST + (size_t)a + 2 * PAGE;
      if (need > contig_bytes) {
        if (contig) munmap(contig, contig_bytes);
        contig_bytes = need < 2 * (size_t)CONTIG_DST ? 2 * (size_t)CONTIG_DST : need;
        contig = map(contig_bytes);
        touch(contig, contig_bytes);
      }
      w.kind = CONTIG;
      w.src = contig + (size_t)b;
      w.dst = contig + CONTIG_DST + (size_t)c;
      w.bytes = (size_t)a;
      measure(&w, (long)d, 1, name, 0, first);
      if (memcmp(w.dst, w.src, w.bytes) != 0) fprintf(stderr, "native: %s copied wrong bytes\n", line);
    } else if (strcmp(kind, "scatter") == 0 || strcmp(kind, "gather") == 0) {
      uint32_t pool_pages = (uint32_t)a, count = (uint32_t)b, hash;
      uint8_t *pool = map((size_t)pool_pages * PAGE), *linear = map((size_t)count * PAGE);
      touch(pool, (size_t)pool_pages * PAGE);
      touch(linear, (size_t)count * PAGE);
      w.pages = pick_pages(pool_pages, count, (uint32_t)c, &hash);
      w.count = count;
      w.kind = kind[0] == 's' ? SCATTER : GATHER;
      w.src = w.kind == SCATTER ? linear : pool;
      w.dst = w.kind == SCATTER ? pool : linear;
      measure(&w, (long)d, 1, name, hash, first);
      free(w.pages);
      munmap(pool, (size_t)pool_pages * PAGE);
      munmap(linear, (size_t)count * PAGE);
    } else if (strcmp(kind, "tiny") == 0) {
      uint32_t window = (uint32_t)a, count = (uint32_t)b, max_len = (uint32_t)c, half = window / 2;
      uint32_t hash = 2166136261u;
      uint8_t *base = map(window);
      touch(base, window);
      w.desc = malloc(sizeof(uint32_t) * 3 * count);
      rng_state = (uint32_t)d;
      for (uint32_t i = 0; i < count; i++) {
        uint32_t len = 1 + mulberry32() % max_len;
        uint32_t src = mulberry32() % (half - len + 1);
        uint32_t dst = half + mulberry32() % (half - len + 1);
        w.desc[3 * i] = dst;
        w.desc[3 * i + 1] = src;
        w.desc[3 * i + 2] = len;
        hash = fnv(fnv(fnv(hash, dst), src), len);
      }
      w.kind = TINY;
      w.src = base;
      w.count = count;
      measure(&w, (long)e, 1, name, hash, first);
      free(w.desc);
      munmap(base, window);
    } else if (strcmp(kind, "threads") == 0) {
      struct team team = { .stop = 0, .copies = (long)c, .bytes = (size_t)a };
      long threads = (long)b;
      if (threads < 1 || threads > 64 || team.copies < 1) {
        fprintf(stderr, "native: bad threads case '%s'\n", line);
        return 2;
      }
      struct member *members = calloc((size_t)threads, sizeof *members);
      pthread_barrier_init(&team.start, NULL, (unsigned)threads + 1);
      pthread_barrier_init(&team.end, NULL, (unsigned)threads + 1);
      for (long i = 0; i < threads; i++) {
        members[i].team = &team;
        members[i].src = map(team.bytes);
        members[i].dst = map(team.bytes);
        touch(members[i].src, team.bytes);
        touch(members[i].dst, team.bytes);
        pthread_create(&members[i].id, NULL, member_main, &members[i]);
      }
      w.kind = THREADS;
      w.team = &team;
      measure(&w, 1, (double)(threads * team.copies), name, 0, first);
      team.stop = 1;
      pthread_barrier_wait(&team.start);
      for (long i = 0; i < threads; i++) {
        pthread_join(members[i].id, NULL);
        if (memcmp(members[i].dst, members[i].src, team.bytes) != 0) fprintf(stderr, "native: %s copied wrong bytes\n", line);
        munmap(members[i].src, team.bytes);
        munmap(members[i].dst, team.bytes);
      }
      pthread_barrier_destroy(&team.start);
      pthread_barrier_destroy(&team.end);
      free(members);
    } else {
      fprintf(stderr, "native: unknown case '%s'\n", line);
      return 2;
    }
    first = 0;
  }
  printf("\n], \"cases\": %d}\n", cases);
  return 0;
}
