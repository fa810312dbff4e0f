'use strict';
// Cross-file inlining, as in any program split into modules: hashAll (this file) calls mix
// (cross_lib.js), which TurboFan inlines into it.  The lines of this header are no code, so
// the helper's hot line number is no line of a function here either.
//
// Two phases, each timed by the workload: hashAll (mostly mix's work) and scan (this file's own
// loop).  stdin: `stats` -> {"hash": ns, "scan": ns, ...}; `exit`.  First line: {"ready": pid}
// after --warm-ms of rounds (default 3000).
const { mix } = require('./cross_lib.js');

function hashAll(buf) {
  let h = 0;
  for (let i = 0; i < buf.length; i++) h = mix(h, buf[i]);
  return h;
}

function scan(buf) {
  let best = 0;
  for (let i = 1; i < buf.length; i++) if ((buf[i] ^ buf[i - 1]) > best) best = buf[i] ^ buf[i - 1];  // HOT:scan
  return best;
}

const opts = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const WARM_MS = Number(opts['warm-ms'] ?? 3000);
const BUF = Int32Array.from({ length: 4096 }, (_, i) => (i * 2654435761) | 0);
const spent = { hash: 0n, scan: 0n };
let sink = 0;
const t0 = process.hrtime.bigint();

function round() {
  const a = process.hrtime.bigint();
  sink ^= hashAll(BUF);
  const b = process.hrtime.bigint();
  sink ^= scan(BUF);
  const c = process.hrtime.bigint();
  spent.hash += b - a;
  spent.scan += c - b;
}

let ready = false;
function chunk() {
  const end = Date.now() + 5;
  do round(); while (Date.now() < end);
  if (!ready && Number(process.hrtime.bigint() - t0) / 1e6 >= WARM_MS) {
    ready = true;
    process.stdout.write(JSON.stringify({ ready: process.pid }) + '\n');
  }
  setImmediate(chunk);
}
process.stdin.setEncoding('utf8');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let k;
  while ((k = buf.indexOf('\n')) >= 0) {
    const cmd = buf.slice(0, k).trim();
    buf = buf.slice(k + 1);
    if (cmd === 'stats') process.stdout.write(JSON.stringify({ hash: Number(spent.hash), scan: Number(spent.scan), sink: sink !== 0.5 }) + '\n');
    else if (cmd === 'exit') process.exit(0);
  }
});
chunk();
