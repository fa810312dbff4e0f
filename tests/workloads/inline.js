'use strict';
// A warmed two-phase workload whose small helpers TurboFan (and Maglev) inline into their callers,
// as on a server that has run for a while.  Each phase times itself, so the truth is known.
//
//   round() -> geometry() -> norm() -> square()        (norm's loop does most of geometry's work)
//           -> lexer()    -> tokenize() -> parseToken() (parseToken's scan does most of lexer's work)
//
// Rounds run back to back in chunks between which the event loop turns (setImmediate), so stdin and
// signals are answered.  Lines marked "HOT:<name>" are where each helper does its work.
//
// stdin commands, answered with one JSON line:
//   stats -> {"t": ns since start, "geometry": ns in geometry, "lexer": ns in lexer, "rounds": n,
//             "cpu": {"geometry": us of CPU in geometry, "lexer": us of CPU in lexer}} (cpu: with --cpu-truth,
//             over every 8th round only: compare shares)
//   (wall-clock ns, and the process's CPU time from process.cpuUsage(): a sampler of CPU time is to be
//   checked against the second, which a busy machine does not skew by descheduling the thread mid-phase)
//   exit  -> exits 0
// SIGUSR2 prints the same JSON line (for targets whose stdin is not ours).
// First line printed: {"ready": pid, "warm": true} once it has run --warm-ms (default 3000) of rounds and had
// as many ms of CPU time (a busy machine gives it less CPU per second: the JIT warms with CPU, not time).
// options: --warm-ms=N  --geometry=N (points per round, default 600)  --lexer=N (source repeats, default 6)
//          --cpu-truth: measure each phase's CPU time too (process.cpuUsage() at the phase boundaries of
//          every 8th round; the rounds are alike, so the shares are the same as over all of them)
//          --churn-ms=N: every N ms switch both phases between two kinds of input (Float64Array points or
//          arrays of small integers; a one-byte or a two-byte source), so the optimized code deoptimizes
//          and is optimized again while it runs (V8 frees the old code and reuses its addresses); under
//          node --allow-natives-syntax each switch also deoptimizes round, geometry and lexer outright
const opts = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const WARM_MS = Number(opts['warm-ms'] ?? 3000);
const GEOMETRY_N = Number(opts.geometry ?? 600);
const LEXER_N = Number(opts.lexer ?? 6);
const CHURN_MS = Number(opts['churn-ms'] ?? 0);
const CPU_TRUTH = 'cpu-truth' in opts;

function square(x) {
  return x * x;
}

function norm(v) {
  let s = 0;
  for (let k = 0; k < v.length; k++) s += square(v[k] - k * 0.5);  // HOT:norm
  return Math.sqrt(s);
}

function geometry(points) {
  let total = 0;
  for (let i = 0; i < points.length; i++) total += norm(points[i]);
  return total;
}

function isIdent(c) {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || (c >= 48 && c <= 57);
}

function parseToken(src, i) {
  let h = 0;
  while (i < src.length && isIdent(src.charCodeAt(i))) { h = (h * 31 + src.charCodeAt(i)) | 0; i++; }  // HOT:parseToken
  return i === src.length ? i + h * 0 : i + 1 + (h & 0);
}

function tokenize(src) {
  let i = 0, n = 0;
  while (i < src.length) { i = parseToken(src, i); n++; }
  return n;
}

function lexer(src, reps) {
  let n = 0;
  for (let r = 0; r < reps; r++) n += tokenize(src);
  return n;
}

const POINTS = Array.from({ length: GEOMETRY_N }, (_, i) =>
  Float64Array.from({ length: 24 }, (_, k) => Math.sin(i * 31 + k) * 100));
const WORDS = 'const alpha_beta = gamma42 + delta_epsilon * zeta ; function omega ( x , y ) return theta_iota ; ';
const SOURCE = WORDS.repeat(40);
const POINTS_ALT = POINTS.map((v) => Array.from(v, (x) => Math.round(x)));
const SOURCE_ALT = SOURCE.replace(/a/g, '\u00e4');
let alt = false;
let flipped = Date.now();
let deoptimize = () => {};
try {
  deoptimize = new Function('fs', 'for (const f of fs) %DeoptimizeFunction(f);');
} catch (e) { /* natives syntax not allowed: input switches only */ }

const spent = { geometry: 0n, lexer: 0n };
const usage = (u) => u.user + u.system;
const { PhaseCpu } = require('./cpu_truth.js');
const truth = new PhaseCpu(['geometry', 'lexer']);
let rounds = 0;
let sink = 0;
const t0 = process.hrtime.bigint();

function round() {
  // --cpu-truth: also the process's CPU time per phase (cpu_truth.js: system calls at the phase boundaries
  // of every 8th round, so only when asked: the inspector's tests run the workload without it).  Wall-clock
  // time per phase is no truth on a busy machine: the thread is descheduled where it makes a system call
  // (then lexer: 44 % wall where its CPU time was 62 %, node 18) or waits for V8's helper threads.
  if (CPU_TRUTH) truth.start();
  const a = process.hrtime.bigint();
  sink += geometry(alt ? POINTS_ALT : POINTS);
  const b = process.hrtime.bigint();
  if (CPU_TRUTH) truth.end('geometry');
  sink += lexer(alt ? SOURCE_ALT : SOURCE, LEXER_N);
  const c = process.hrtime.bigint();
  if (CPU_TRUTH) truth.end('lexer');
  spent.geometry += b - a;
  spent.lexer += c - b;
  rounds++;
}

function stats() {
  return JSON.stringify({ t: Number(process.hrtime.bigint() - t0), geometry: Number(spent.geometry),
                          lexer: Number(spent.lexer), rounds, cpu: truth.stats(), sink: sink > 0 });
}

let ready = false;
function chunk() {
  const end = Date.now() + 5;
  do round(); while (Date.now() < end);
  if (CHURN_MS > 0 && Date.now() - flipped >= CHURN_MS) {
    alt = !alt;
    deoptimize([round, geometry, lexer, norm, tokenize]);
    flipped = Date.now();
  }
  if (!ready && Number(process.hrtime.bigint() - t0) / 1e6 >= WARM_MS && usage(process.cpuUsage()) / 1e3 >= WARM_MS) {
    ready = true;
    process.stdout.write(JSON.stringify({ ready: process.pid, warm: true }) + '\n');
  }
  setImmediate(chunk);
}

process.on('SIGUSR2', () => process.stdout.write(stats() + '\n'));
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  let k;
  while ((k = buf.indexOf('\n')) >= 0) {
    const cmd = buf.slice(0, k).trim();
    buf = buf.slice(k + 1);
    if (cmd === 'stats') process.stdout.write(stats() + '\n');
    else if (cmd === 'exit') process.exit(0);
  }
});
process.stdin.on('end', () => process.exit(0));
setImmediate(chunk);
