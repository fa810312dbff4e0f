'use strict';
// An HTTP server under load from its own client, as a service is in production when every CPU is busy:
// each request is parsed (JSON.parse, V8's C++ JSON parser), ranked (a scoring loop and
// Array.prototype.sort with a comparator), rendered (template strings and a String.prototype.replace
// callback) and hashed (crypto).  TurboFan inlines the small helpers into their callers once warm.
// Each phase times itself, in wall time (process.hrtime) and in CPU time (process.cpuUsage: the
// process's, of which the main thread has all but ~0.3 %), so the truth is known for a wall-clock
// sampler and for a CPU-time one; they part when the machine is busy and the thread waits for a CPU.
//
//   node http_phases.js [--warm-ms=N]       the server; starts its client as a child process
//   node http_phases.js --client=PORT       the client (4 keep-alive connections, back to back)
//
// stdin commands, answered with one JSON line:
//   stats -> {"t": ns since start, "parse": ns, "rank": ns, "render": ns, "digest": ns, "requests": n,
//             "cpu": {"parse": us, "rank": us, "render": us, "digest": us}}
//   exit  -> exits 0 (so does the end of stdin), its client with it
// First line printed: {"ready": pid, "warm": true, "port": port} once it has served --warm-ms (default
// 3000) of requests and had as many ms of CPU time (the JIT warms with CPU, not time).
const http = require('http');
const crypto = require('crypto');
const { spawn } = require('child_process');

const opts = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));

if (opts.client) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const items = Array.from({ length: 400 }, (_, i) => ({ name: `item<${i}>&"${'x'.repeat(i % 30)}"`, w: (i % 7) + 1 }));
  const body = JSON.stringify({ items });
  const one = () => {
    const req = http.request({ port: Number(opts.client), method: 'POST', path: '/', agent }, (res) => {
      res.resume();
      res.on('end', one);
    });
    req.on('error', () => process.exit(0));   // the server went away
    req.end(body);
  };
  for (let i = 0; i < 4; i++) one();
  return;
}

const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };

function escapeHtml(s) {
  return s.replace(/[&<>"]/g, (c) => ENTITIES[c]);
}

function renderRow(r) {
  return `<tr><td>${escapeHtml(r.name)}</td><td>${r.score.toFixed(2)}</td></tr>`;
}

function render(rows) {
  let out = '<table>';
  for (const r of rows) {
    out += renderRow(r);
  }
  return out + '</table>';
}

function score(r) {
  let s = 0;
  for (let i = 0; i < r.name.length; i++) {
    s = (s * 33 + r.name.charCodeAt(i)) | 0;
  }
  return ((s >>> 0) / 4294967296) * r.w;
}

function byScore(a, b) {
  return b.score - a.score;
}

function rank(rows) {
  for (const r of rows) {
    r.score = score(r);
  }
  rows.sort(byScore);
  return rows;
}

function digest(html) {
  return crypto.createHash('sha256').update(html).digest('hex');
}

const T = { parse: 0n, rank: 0n, render: 0n, digest: 0n, requests: 0 };
const C = { parse: 0, rank: 0, render: 0, digest: 0 };
const now = process.hrtime.bigint;
const START = now();
const cpuNow = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function handle(body) {
  // each boundary reads the CPU clock, then the wall clock: each phase's interval holds one cpuNow
  // (~0.7 us, named cpuNow by a sampler, so no phase's own), in either clock
  const c0 = cpuNow();
  const t0 = now();
  const data = JSON.parse(body);            // PHASE:parse
  const c1 = cpuNow();
  const t1 = now();
  const rows = rank(data.items);
  const c2 = cpuNow();
  const t2 = now();
  const html = render(rows.slice(0, 200));
  const c3 = cpuNow();
  const t3 = now();
  await null;                               // the rest runs as a microtask, whose start is no phase's
  const c3a = cpuNow();
  const t3a = now();
  const d = digest(html);
  const c4 = cpuNow();
  const t4 = now();
  T.parse += t1 - t0;
  T.rank += t2 - t1;
  T.render += t3 - t2;
  T.digest += t4 - t3a;
  T.requests++;
  C.parse += c1 - c0;
  C.rank += c2 - c1;
  C.render += c3 - c2;
  C.digest += c4 - c3a;
  return d + html.length;
}

function stats() {
  return JSON.stringify({
    t: Number(now() - START), parse: Number(T.parse), rank: Number(T.rank), render: Number(T.render),
    digest: Number(T.digest), requests: T.requests, cpu: C,
  });
}

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => handle(body).then((r) => res.end(r)));
});

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const client = spawn(process.execPath, [__filename, `--client=${port}`], { stdio: 'ignore' });
  const quit = () => { client.kill('SIGKILL'); process.exit(0); };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    for (const cmd of d.split('\n')) {
      if (cmd === 'stats') process.stdout.write(stats() + '\n');
      else if (cmd === 'exit') quit();
    }
  });
  process.stdin.on('end', quit);
  const warmMs = Number(opts['warm-ms'] ?? 3000);
  const wall0 = Date.now();
  const cpu0 = process.cpuUsage();
  const check = setInterval(() => {
    const cpu = process.cpuUsage(cpu0);
    if (Date.now() - wall0 >= warmMs && (cpu.user + cpu.system) / 1000 >= warmMs) {
      clearInterval(check);
      process.stdout.write(JSON.stringify({ ready: process.pid, warm: true, port }) + '\n');
    }
  }, 50);
});
