'use strict';
// Accuracy/health workload for the capture tests and benchmarks.
//
// Main thread: functionA and functionB, two CPU-hot functions called in turn
// (A gets ~2x the iterations of B), each call timed with process.hrtime, in
// chunks of ~5 ms between which the event loop turns (so stdin is answered).
// Worker thread (named 'hot-worker'): functionW, hot the same way; its counters are shared with the
// main thread through a SharedArrayBuffer.
//
// stdin commands (one per line), answered with one JSON line on stdout:
//   stats  -> {"t": ns since start, "m": CLOCK_MONOTONIC ns (the clock of V8's profile
//              timestamps), "a": ns in functionA, "b": ns in functionB,
//              "ai": iterations of A, "bi": iterations of B,
//              "w": ns in functionW, "wt": worker ns since its start, "wi": iterations of W}
//   ping   -> {"pong": n}
//   pause  -> {"paused": n} once the main thread's chunk loop and the worker's have stopped (between two
//             calls: no call timed in the counters is cut by a pause; the worker sleeps in Atomics.wait,
//             the main thread's event loop idles and still answers every command)
//   resume -> {"resumed": n} once both loops run again (n counts the pauses)
//   exit   -> exits 0
// stdin closing also exits.  First line printed: {"ready": pid, ...} once the
// worker runs.
//
// options: --no-worker  --ratio=R (A:B iterations, default 2)
//          --no-sigusr1 (install then remove a SIGUSR1 listener: the process no
//          longer catches SIGUSR1, as with node's --disable-sigusr1 on node >= 22.14)
//          --print-ms=N (also print stats every N ms)  --exit-after-ms=N
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

const N = 20000;  // iterations per call of A (B: N / ratio)

// Bodies big enough that TurboFan does not inline them into their caller
// (bytecode > 460 bytes, V8's --max-inlined-bytecode-size; at 8 lines, ~400
// bytes, functionA got inlined into chunk after a while), so every backend
// (perf with --perf-basic-prof too) sees them as frames.
function functionA(n, x) {
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff; x ^= x >>> 7; x = (x + i) | 0;
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

function functionB(n, x) {
  for (let i = 0; i < n; i++) {
    x = (x * 214013 + 2531011) & 0x7fffffff; x ^= x >>> 9; x = (x + i) | 0;
    x = (x * 22695477 + 1) & 0x7fffffff; x ^= x << 4; x = (x - i) | 0;
    x = (x * 214013 + 2531011) & 0x7fffffff; x ^= x >>> 5; x = (x + 17) | 0;
    x = (x * 22695477 + 1) & 0x7fffffff; x ^= x << 6; x = (x ^ i) | 0;
    x = (x * 214013 + 2531011) & 0x7fffffff; x ^= x >>> 3; x = (x + 19) | 0;
    x = (x * 22695477 + 1) & 0x7fffffff; x ^= x << 1; x = (x - 23) | 0;
    x = (x * 214013 + 2531011) & 0x7fffffff; x ^= x >>> 15; x = (x + 29) | 0;
    x = (x * 22695477 + 1) & 0x7fffffff; x ^= x << 7; x = (x ^ 31) | 0;
    x = (x * 214013 + 2531011) & 0x7fffffff; x ^= x >>> 10; x = (x + 71) | 0;
    x = (x * 22695477 + 1) & 0x7fffffff; x ^= x << 8; x = (x - 73) | 0;
    x = (x * 214013 + 2531011) & 0x7fffffff; x ^= x >>> 14; x = (x ^ 79) | 0;
  }
  return x;
}

function functionW(n, x) {
  for (let i = 0; i < n; i++) {
    x = (x * 134775813 + 1) & 0x7fffffff; x ^= x >>> 8; x = (x + i) | 0;
    x = (x * 1664525 + 1013904223) & 0x7fffffff; x ^= x << 3; x = (x - i) | 0;
    x = (x * 134775813 + 1) & 0x7fffffff; x ^= x >>> 12; x = (x + 37) | 0;
    x = (x * 1664525 + 1013904223) & 0x7fffffff; x ^= x << 5; x = (x ^ i) | 0;
    x = (x * 134775813 + 1) & 0x7fffffff; x ^= x >>> 4; x = (x + 41) | 0;
    x = (x * 1664525 + 1013904223) & 0x7fffffff; x ^= x << 2; x = (x - 43) | 0;
    x = (x * 134775813 + 1) & 0x7fffffff; x ^= x >>> 16; x = (x + 47) | 0;
    x = (x * 1664525 + 1013904223) & 0x7fffffff; x ^= x << 11; x = (x ^ 53) | 0;
    x = (x * 134775813 + 1) & 0x7fffffff; x ^= x >>> 6; x = (x + 83) | 0;
    x = (x * 1664525 + 1013904223) & 0x7fffffff; x ^= x << 9; x = (x - 89) | 0;
    x = (x * 134775813 + 1) & 0x7fffffff; x ^= x >>> 18; x = (x ^ 97) | 0;
  }
  return x;
}

// Every hot call goes through invoke(): one call site that has seen more than four different
// functions (megamorphic), which neither TurboFan nor Maglev inlines through.  The size of the
// bodies alone is not enough: node 22/24 inlined functionA/functionW into chunk all the same.
function invoke(f, n, x) { return f(n, x); }
const others = [(n, x) => x + 1, (n, x) => x ^ n, (n, x) => x - n, (n, x) => x | 1, (n, x) => x & n];
// (many rounds: V8 allocates a function's feedback vector only after its first calls)
for (let r = 0; r < 200; r++) for (const f of others) invoke(f, r, r);
// Short calls first, so the hot functions get their optimized code by call count, not by
// on-stack replacement in a long loop: node 22's profiler (V8 12.4) does not know OSR code
// compiled before it started, and gives its samples to the caller until it is replaced.
const warm = (f) => { let x = 1; for (let r = 0; r < 3000; r++) x = invoke(f, 4, x); return x; };

const now = process.hrtime.bigint;

if (!isMainThread) {
  // worker: counters[0] = ns in functionW, [1] = ns since worker start, [2] = iterations
  const counters = new BigInt64Array(workerData.sab, 0, 3);
  const ctl = new Int32Array(workerData.sab, 24, 2);   // [0] 1: pause asked, [1] 1: paused (see 'pause')
  // Between two chunks, every time (no branch that only a pause takes: a call there, never made before,
  // would deoptimize chunk, and switching setImmediate's callback deoptimizes processImmediate): while a
  // pause is asked, says so in ctl[1] and sleeps in Atomics.wait; else Atomics.wait returns at once.
  const between = () => {
    for (;;) {
      Atomics.store(ctl, 1, Atomics.load(ctl, 0));
      if (Atomics.wait(ctl, 0, 1, 50) === 'not-equal') break;
    }
    Atomics.store(ctl, 1, 0);
  };
  warm(functionW);
  const t0 = now();
  let x = 1;
  const chunk = () => {
    const end = now() + 5000000n;
    let t = now();
    while (t < end) {
      x = invoke(functionW, N, x);
      const t2 = now();
      counters[0] += t2 - t;
      counters[2] += BigInt(N);
      t = t2;
    }
    counters[1] = t - t0;
    between();
    setImmediate(chunk);
  };
  parentPort.postMessage('started');
  chunk();
} else {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const a = args.find((s) => s === `--${name}` || s.startsWith(`--${name}=`));
    if (a === undefined) return dflt;
    return a.includes('=') ? a.split('=')[1] : true;
  };
  const ratio = Number(opt('ratio', 2));
  const NB = Math.max(1, Math.round(N / ratio));
  warm(functionA);
  warm(functionB);
  const sab = new SharedArrayBuffer(8 * 3 + 4 * 2);
  const wc = new BigInt64Array(sab, 0, 3);
  const ctl = new Int32Array(sab, 24, 2);
  let withWorker = false, paused = false, parked = false, pauses = 0;
  const t0 = now();
  let a = 0n, b = 0n, ai = 0n, bi = 0n, pongs = 0, x = 1;

  const stats = () => JSON.stringify({
    t: Number(now() - t0), m: Number(now()), a: Number(a), b: Number(b), ai: Number(ai), bi: Number(bi),
    w: Number(wc[0]), wt: Number(wc[1]), wi: Number(wc[2]),
  });

  const chunk = () => {
    if (paused) { parked = true; return; }   // 'resume' schedules it again
    const end = now() + 5000000n;
    let t = now();
    while (t < end) {
      x = invoke(functionA, N, x);
      const t1 = now();
      x = invoke(functionB, NB, x);
      const t2 = now();
      a += t1 - t; b += t2 - t1; ai += BigInt(N); bi += BigInt(NB);
      t = t2;
    }
    setImmediate(chunk);
  };

  if (opt('no-sigusr1', false)) {
    const f = () => {};
    process.on('SIGUSR1', f);
    process.removeListener('SIGUSR1', f);
  }

  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const cmd = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (cmd === 'stats') process.stdout.write(stats() + '\n');
      else if (cmd === 'ping') process.stdout.write(JSON.stringify({ pong: ++pongs }) + '\n');
      else if (cmd === 'pause') pause();
      else if (cmd === 'resume') resume();
      else if (cmd === 'exit') process.exit(0);
    }
  });
  process.stdin.on('end', () => process.exit(0));

  // The main thread's loop stops at once: commands are read between two chunks, and the chunk already
  // scheduled returns before calling anything.  The worker stops at the start of its next chunk.
  const pause = () => {
    if (!paused) { paused = true; pauses++; Atomics.store(ctl, 0, 1); }
    const answer = () => {
      if (withWorker && Atomics.load(ctl, 1) !== 1) { setTimeout(answer, 1); return; }
      process.stdout.write(JSON.stringify({ paused: pauses }) + '\n');
    };
    answer();
  };
  const resume = () => {
    if (paused) {
      paused = false;
      Atomics.store(ctl, 0, 0);
      Atomics.notify(ctl, 0);
      if (parked) { parked = false; setImmediate(chunk); }
    }
    const answer = () => {
      if (withWorker && Atomics.load(ctl, 1) !== 0) { setTimeout(answer, 1); return; }
      process.stdout.write(JSON.stringify({ resumed: pauses }) + '\n');
    };
    answer();
  };

  const printMs = Number(opt('print-ms', 0));
  if (printMs > 0) setInterval(() => process.stdout.write(stats() + '\n'), printMs);
  const exitAfter = Number(opt('exit-after-ms', 0));
  if (exitAfter > 0) setTimeout(() => process.exit(0), exitAfter);

  const ready = () => {
    process.stdout.write(JSON.stringify({ ready: process.pid, node: process.version }) + '\n');
    chunk();
  };
  if (opt('no-worker', false)) {
    ready();
  } else {
    withWorker = true;
    const w = new Worker(__filename, { workerData: { sab }, name: 'hot-worker' });
    w.unref();
    w.once('message', ready);
  }
}
