'use strict';
// Workload for tests/test_walker.py: known hot functions of every shape the walker must name.
// Usage: node walker_main.js [seconds=60] [--no-worker] [--deep] [--control]
// --control: reads commands on stdin, one a line: 'pause' stops the main thread's rounds and the worker's
// loop between two calls (both then sleep) and prints 'paused' once both have stopped; 'resume' undoes it
// and prints 'resumed' once both run again.  stdin closing ends the process.
const { libWork } = require('./walker_lib.js');
const path = require('path');

function plainHot(n) {                      // a plain function declaration
  let s = 0;
  for (let i = 0; i < n; i++) s = (s * 31 + i) % 1000003;
  return s;
}

class Matrix {                              // class constructor and method
  constructor(n) {
    this.n = n;
    this.a = new Float64Array(n * n);
    for (let i = 0; i < n * n; i++) this.a[i] = (i * 13) % 7;
  }
  multiply(o) {
    const n = this.n, r = new Matrix(n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += this.a[i * n + k] * o.a[k * n + j];
        r.a[i * n + j] = s;
      }
    return r;
  }
}

const arrowHot = (n) => {                   // an arrow function
  let s = 1;
  for (let i = 1; i < n; i++) s = (s ^ (i * 2654435761)) >>> 0;
  return s;
};

const handlers = {};
handlers.onTick = function (n) {          // anonymous, inferred name "handlers.onTick"
  let s = '';
  for (let i = 0; i < n; i++) s = String.fromCharCode(97 + (i % 26)) + s.slice(0, 30);
  return s.length;
};

function função(n) {                        // Latin-1 name (one-byte string)
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.sin(i) * Math.cos(i);
  return s;
}

function 計算する(n) {                        // two-byte name
  let s = 0;
  for (let i = 0; i < n; i++) s += (i % 3 === 0 ? i : -i) | 0;
  return s;
}

function deep(k) {                          // recursion 3000 deep
  if (k === 0) {
    let s = 0;
    for (let i = 0; i < 60000; i++) s += i % 7;
    return s;
  }
  return deep(k - 1) + 1;
}

const argv = process.argv.slice(2);
const seconds = Number(argv.find((a) => /^\d+(\.\d+)?$/.test(a)) || 60);
const withWorker = !argv.includes('--no-worker');
const withDeep = argv.includes('--deep');
const control = argv.includes('--control');

let worker = null;
// --control: [0] 1 while a pause is asked, [1] 1 while the worker sleeps for it (walker_worker.js)
const ctl = control && withWorker ? new Int32Array(new SharedArrayBuffer(8)) : null;
if (withWorker) {
  const { Worker } = require('worker_threads');
  const file = path.join(__dirname, 'walker_worker.js');
  worker = ctl ? new Worker(file, { workerData: { ctl: ctl.buffer } }) : new Worker(file);
  worker.unref();
}

const m = new Matrix(24);
function buildMatrix(n) { return new Matrix(n); }
function multiplyTask() { return m.multiply(m); }
function deepTask() { return deep(3000); }
// called through one megamorphic call site, so that TurboFan inlines none of them into round()
const tasks = [plainHot, buildMatrix, multiplyTask, arrowHot, handlers.onTick, função, 計算する, libWork];
const names = ['plainHot', 'buildMatrix', 'multiplyTask', 'arrowHot', 'handlers.onTick', 'função', '計算する',
  'libWork'];
const args = [12000, 18, 0, 12000, 600, 6000, 12000, 8000];
if (withDeep) { tasks.push(deepTask); names.push('deepTask'); args.push(0); }
// the workload's own account of where its time goes: wall time spent in each task (ns), printed as JSON on
// SIGUSR2, so that a profiler's shares can be checked against it over the same window
const spent = new Float64Array(tasks.length);
const hr = process.hrtime.bigint;
let rounds = 0;
const until = Date.now() + seconds * 1000;
let paused = false, parked = false, finished = false;   // --control
function round() {
  if (paused) { parked = true; return; }    // 'resume' schedules it again
  for (let i = 0; i < tasks.length; i++) {
    const t0 = hr();
    tasks[i](args[i]);
    spent[i] += Number(hr() - t0);
  }
  rounds++;
  if (Date.now() < until) setImmediate(round);
  else {
    if (worker) worker.terminate();
    finished = true;
    if (control) process.stdin.destroy();
  }
}
process.on('SIGUSR2', () => {
  const by = {};
  names.forEach((n, i) => { by[n] = spent[i]; });
  process.stdout.write(`rounds ${rounds} ${JSON.stringify(by)}\n`);
});
if (control) {
  // answers once the worker is where it was asked to be (the main thread is: commands are read between rounds)
  const answer = (text, workerAck) => {
    if (ctl && !finished && Atomics.load(ctl, 1) !== workerAck) { setTimeout(() => answer(text, workerAck), 1); return; }
    process.stdout.write(`${text}\n`);
  };
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const cmd = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (cmd === 'pause') {
        paused = true;
        if (ctl) Atomics.store(ctl, 0, 1);
        answer('paused', 1);
      } else if (cmd === 'resume') {
        paused = false;
        if (ctl) { Atomics.store(ctl, 0, 0); Atomics.notify(ctl, 0); }
        if (parked) { parked = false; setImmediate(round); }
        answer('resumed', 0);
      }
    }
  });
  process.stdin.on('end', () => process.exit(0));
}
process.stdout.write(`ready ${process.pid}\n`);
setImmediate(round);
