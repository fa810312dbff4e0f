'use strict';
// nodeflame's demo program: a loop of "requests", each parsing a CSV payload
// with a dependency (tinyparse, in node_modules), scoring the rows, rendering
// an HTML page and hashing it.  Allocation-heavy enough to show GC.
//
//   node app.js [--slow-render] [--seconds=N]
//
// --slow-render makes renderPage several times slower (the "before" of
// notebooks/03-diff.ipynb).  Prints {"ready": pid} once running and
// {"warm": n} once it has served WARM requests (V8 has then optimized its
// hot functions: tiering counts calls and loop iterations, not time); runs
// until killed, stdin closes, or --seconds pass.
const { parse } = require('tinyparse');
const crypto = require('crypto');

const args = process.argv.slice(2);
const slowRender = args.includes('--slow-render');
const secArg = args.find((a) => a.startsWith('--seconds='));
const seconds = secArg ? Number(secArg.split('=')[1]) : 0;

function makePayload(n, seed) {
  let s = seed;
  const lines = [];
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    lines.push(`${i},item${s % 1000},${s % 97},${(s >> 8) % 13}`);
  }
  return lines.join('\n');
}

function scoreRows(rows) {
  let total = 0;
  for (const r of rows) {
    const a = Number(r[2]);
    const b = Number(r[3]);
    for (let k = 0; k < 40; k++) total = (total + a * k + b) % 1000003;
  }
  return total;
}

function escapeHtml(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function renderRow(r) {
  return `<tr><td>${escapeHtml(r[0])}</td><td>${escapeHtml(r[1])}</td><td>${r[2]}</td></tr>`;
}

function renderPage(rows, score) {
  const reps = slowRender ? 6 : 1;
  let html = '';
  for (let k = 0; k < reps; k++) {
    const parts = [];
    for (const r of rows) parts.push(renderRow(r));
    html = `<html><body><h1>${score}</h1><table>${parts.join('')}</table></body></html>`;
  }
  return html;
}

function hashPage(html) {
  return crypto.createHash('sha256').update(html).digest('hex');
}

function handleRequest(i) {
  const payload = makePayload(300, i + 1);
  const rows = parse(payload);
  const score = scoreRows(rows);
  const html = renderPage(rows, score);
  return hashPage(html);
}

const WARM = 2000;
let served = 0;
let warm = false;
const t0 = Date.now();
function loop() {
  const until = Date.now() + 20;
  while (Date.now() < until) handleRequest(served++);
  if (!warm && served >= WARM) {
    warm = true;
    process.stdout.write(JSON.stringify({ warm: served }) + '\n');
  }
  if (seconds && Date.now() - t0 > seconds * 1000) process.exit(0);
  setImmediate(loop);
}

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write(JSON.stringify({ ready: process.pid }) + '\n');
loop();
