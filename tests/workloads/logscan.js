'use strict';
// An access-log scanner: every line is matched by one regular expression and its path escaped for HTML
// with a String.prototype.replace callback, an arrow function made anew by every call of escapeHtml (as
// such callbacks are): after warm-up its code is optimized, while each closure dies young.
//
//   node logscan.js [--warm-ms=N]
// stdin: "stats" -> {"scans": n, "lines": n}; the end of stdin exits.
// First lines printed: {"ready": pid}, then {"warm": true} once it has scanned for --warm-ms (default 2000).
const opts = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const WARM_MS = Number(opts['warm-ms'] ?? 2000);

const LINE = /^(\S+) \S+ (\S+) \[([^\]]+)\] "(GET|POST|PUT|DELETE) ([^ "]+) HTTP\/1\.[01]" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$/;
const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };

const lines = [];
for (let i = 0; i < 2000; i++) {
  lines.push(`10.0.${i % 256}.${(i * 7) % 256} - user${i % 13} [05/Dec/2026:09:${String(i % 60).padStart(2, '0')}:00 +0000] ` +
             `"GET /items/${i}?q=<a&b>&page=${i % 9} HTTP/1.1" ${200 + (i % 3)} ${1000 + i} ` +
             `"https://example.com/${'x'.repeat(i % 40)}" "Mozilla/5.0 (X11; Linux x86_64)"`);
}

function escapeHtml(s) {
  return s.replace(/[&<>"]/g, (c) => ENTITIES[c]);
}

function scan() {
  let bytes = 0, errors = 0, out = 0;
  for (const l of lines) {
    const m = LINE.exec(l);
    if (!m) { errors++; continue; }
    bytes += Number(m[7]);
    if (m[6] !== '200') errors++;
    out += escapeHtml(m[5]).length;
  }
  return bytes + errors + out;
}

let scans = 0, sink = 0, warm = false;
const t0 = Date.now();
process.stdout.write(JSON.stringify({ ready: process.pid }) + '\n');
function loop() {
  const end = Date.now() + 20;
  while (Date.now() < end) { sink += scan(); scans++; }
  if (!warm && Date.now() - t0 >= WARM_MS) {
    warm = true;
    process.stdout.write(JSON.stringify({ warm: true }) + '\n');
  }
  setImmediate(loop);
}
loop();
process.stdin.setEncoding('utf8');
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const cmd = buf.slice(0, i).trim();
    buf = buf.slice(i + 1);
    if (cmd === 'stats') process.stdout.write(JSON.stringify({ scans, lines: scans * lines.length, sink: sink > 0 }) + '\n');
  }
});
process.stdin.on('end', () => process.exit(0));
