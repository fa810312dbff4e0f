'use strict';
// WebAssembly next to JavaScript, as in a program that uses a wasm build of a library (a hash, a
// codec): `checksum` runs over the module's memory in wasm, `jsChecksum` does the same over a
// Uint8Array in JavaScript, and `driver` calls both (TurboFan inlines the call into wasm, the
// js-to-wasm wrapper, into `driver` once warm).  Each side times itself, so the truth is known.
//
// stdin commands, answered with one JSON line:
//   stats -> {"wasm": ns in checksum, "js": ns in jsChecksum, "wasm_cpu"/"js_cpu": us of the process's CPU
//             time in each over every 8th call (cpu_truth.js: what a CPU sampler is checked against, which
//             a busy machine does not skew by descheduling the thread mid-call; compare shares), "calls": n}
//   exit  -> exits 0 (so does the end of stdin)
// First line printed: {"ready": pid, "warm": true} after --warm-ms (default 2000) of rounds.
//
// The module is assembled here byte by byte (no toolchain needed): one memory of one page (exported
// as "memory") and one function, checksum(ptr, len) -> i32, with its name in the name section:
//   acc = 0; i = 0; do { acc = acc * 31 + mem[ptr + i]; i++ } while (i < len); return acc
const opts = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));

function leb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
const str = (s) => [...leb(Buffer.byteLength(s)), ...Buffer.from(s)];
const I32 = 0x7f;
const body = [
  1, 2, I32,                                          // locals 2 (i), 3 (acc): i32
  0x03, 0x40,                                         // loop
  0x20, 3, 0x41, 31, 0x6c,                            //   acc * 31
  0x20, 0, 0x20, 2, 0x6a, 0x2d, 0, 0,                 //   mem[ptr + i] (i32.load8_u)
  0x6a, 0x21, 3,                                      //   acc = ... + ...
  0x20, 2, 0x41, 1, 0x6a, 0x22, 2,                    //   i = i + 1
  0x20, 1, 0x49, 0x0d, 0,                             //   br_if (i < len) loop
  0x0b,                                               // end
  0x20, 3, 0x0b,                                      // acc
];
const fnNames = [1, 0, ...str('checksum')];
const bytes = Buffer.from([
  0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
  ...section(1, [1, 0x60, 2, I32, I32, 1, I32]),      // type: (i32, i32) -> i32
  ...section(3, [1, 0]),                              // function 0 has type 0
  ...section(5, [1, 0, 1]),                           // memory: min 1 page
  ...section(7, [2, ...str('checksum'), 0, 0, ...str('memory'), 2, 0]),
  ...section(10, [1, ...leb(body.length), ...body]),
  ...section(0, [...str('name'), 1, ...leb(fnNames.length), ...fnNames]),
]);
const wasm = new WebAssembly.Instance(new WebAssembly.Module(bytes));
const checksum = wasm.exports.checksum;
const LEN = 32768;
const data = new Uint8Array(wasm.exports.memory.buffer, 0, LEN);
for (let i = 0; i < LEN; i++) data[i] = (i * 2654435761) >>> 24;
const copy = Uint8Array.from(data);

function jsChecksum(buf) {
  let acc = 0;
  for (let i = 0; i < buf.length; i++) acc = (Math.imul(acc, 31) + buf[i]) | 0;
  return acc;
}

const now = process.hrtime.bigint;
const T = { wasm: 0n, js: 0n, calls: 0 };
const { PhaseCpu } = require('./cpu_truth.js');
const truth = new PhaseCpu(['wasm', 'js']);   // (every 8th call: see cpu_truth.js)
function driver() {
  truth.start();
  const t0 = now();
  const a = checksum(0, LEN);
  const t1 = now();
  truth.end('wasm');
  const b = jsChecksum(copy);
  const t2 = now();
  truth.end('js');
  T.wasm += t1 - t0;
  T.js += t2 - t1;
  T.calls++;
  if (a !== b) throw new Error(`checksums differ: wasm ${a}, js ${b}`);
}

const warmMs = Number(opts['warm-ms'] ?? 2000);
const start = Date.now();
let warm = false;
function loop() {
  const until = Date.now() + 10;
  while (Date.now() < until) driver();
  if (!warm && Date.now() - start >= warmMs) {
    warm = true;
    process.stdout.write(JSON.stringify({ ready: process.pid, warm: true }) + '\n');
  }
  setImmediate(loop);
}
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  for (const cmd of d.split('\n')) {
    if (cmd === 'stats') {
      const cpu = truth.stats();
      process.stdout.write(JSON.stringify({ wasm: Number(T.wasm), js: Number(T.js), wasm_cpu: cpu.wasm,
                                            js_cpu: cpu.js, calls: T.calls }) + '\n');
    } else if (cmd === 'exit') process.exit(0);
    else if (cmd === 'exit') process.exit(0);
  }
});
process.stdin.on('end', () => process.exit(0));
loop();
