'use strict';
// One long-running call of a hot loop, as in a batch job or a request that has been crunching for a
// while: V8 compiles the loop with on-stack replacement (OSR) while the call runs, and keeps running
// that OSR code for the rest of the call.  A profiler that starts after the OSR compile never learns
// of that code (V8's CPU profiler logs the code attached to functions when it starts, and OSR code is
// attached to none), so the loop's own time is charged to the caller of spin().
//
//   main() -> spin()            one call, --run-ms long; its loop does most of the work itself
//                  -> digest()  every --every-th pass, a large function (never inlined) that the
//                               profiler does know: its time stays its own
//
// The loop cannot read stdin (it never returns to the event loop), so it reports by itself on stdout,
// one JSON line each (pipes are written synchronously on Linux):
//   {"t": ns since start, "spin": ns inside spin(), "digest": ns inside digest(), "passes": n,
//    "warm": whether the loop has run --warm-ms (by then it runs OSR code), "pid": pid}
//                                 every --report-ms (default 20) from inside the loop
//   {"done": true, ...}           when the call returns; then the process exits
// options: --warm-ms=N (default 1500)  --run-ms=N (default 30000)  --every=N (default 64)
const opts = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const WARM_MS = Number(opts['warm-ms'] ?? 1500);
const RUN_MS = Number(opts['run-ms'] ?? 30000);
const EVERY = Number(opts.every ?? 64);
const REPORT_MS = Number(opts['report-ms'] ?? 20);

// Times are doubles (ms): BigInt arithmetic or a branch first taken late would deoptimize the OSR code,
// and the re-compiled code (after the profiler started) would be known to the profiler.
const { performance } = require('perf_hooks');
const now = () => performance.now();
const t0 = now();

// Big enough (bytecode > 460 bytes) that TurboFan keeps it a call of its own.
function digest(buf, seed) {
  let x = seed | 0;
  for (let i = 0; i < buf.length; i++) {
    x = (x * 1103515245 + buf[i]) & 0x7fffffff; x ^= x >>> 7; x = (x + i) | 0;
    x = (x * 69069 + 1) & 0x7fffffff; x ^= x << 3; x = (x - i) | 0;
    x = (x * 1103515245 + 12345) & 0x7fffffff; x ^= x >>> 11; x = (x + 3) | 0;
    x = (x * 69069 + 1) & 0x7fffffff; x ^= x << 5; x = (x ^ i) | 0;
    x = (x * 1103515245 + 12345) & 0x7fffffff; x ^= x >>> 13; x = (x + 7) | 0;
    x = (x * 69069 + 1) & 0x7fffffff; x ^= x << 2; x = (x - 5) | 0;
    x = (x * 1103515245 + 12345) & 0x7fffffff; x ^= x >>> 17; x = (x + 11) | 0;
    x = (x * 69069 + 1) & 0x7fffffff; x ^= x << 9; x = (x ^ 13) | 0;
    x = (x * 1103515245 + 12345) & 0x7fffffff; x ^= x >>> 19; x = (x + 59) | 0;
    x = (x * 69069 + 1) & 0x7fffffff; x ^= x << 4; x = (x - 61) | 0;
    x = (x * 1103515245 + 12345) & 0x7fffffff; x ^= x >>> 21; x = (x ^ 67) | 0;
  }
  return x;
}

function spin(runMs) {
  const buf = new Uint8Array(4096).map((_, i) => (i * 131) & 255);
  let acc = 0, passes = 0, inDigest = 0;
  const start = now();
  let nextReport = start;
  for (;;) {
    // the loop's own work: a mixing pass over the buffer
    for (let i = 0; i < buf.length; i++) acc = (acc * 31 + buf[i] * (i | 1)) | 0;
    passes++;
    if (passes % EVERY === 0) {
      const a = now();
      acc ^= digest(buf, acc);
      const b = now();
      inDigest += b - a;
      if (b >= nextReport) {
        // every report takes the same path from the first pass on (no branch first taken later)
        const ns = 1e6 * (b - start);
        process.stdout.write(JSON.stringify({ t: Math.round(1e6 * (b - t0)), spin: Math.round(ns),
                                              digest: Math.round(1e6 * inDigest), passes,
                                              warm: ns >= 1e6 * WARM_MS, pid: process.pid }) + '\n');
        nextReport = b + REPORT_MS;
        if (ns >= 1e6 * runMs) break;
      }
    }
  }
  return acc;
}

function main() {
  const acc = spin(RUN_MS);
  process.stdout.write(JSON.stringify({ done: true, acc }) + '\n');
}

main();
