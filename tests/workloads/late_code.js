// Code compiled after the profiler attached: idle until a line arrives on stdin (as a server is until
// its first requests), then builds 300 request handlers (as a lazily loaded module or a template engine
// does), warms them (TurboFan compiles them and inlines them into `serve`) and keeps them hot for the
// number of milliseconds given on the line; then prints "done", the total and the CPU time it used
// ("done T cpu_us N"), and exits when its stdin ends.  node 18, 20 and 22 commit the new code into
// pages of their code space that were not executable (or not mapped) before.
"use strict";
const N = 300;

function makeHandler(i) {
  return new Function("n", `let s = ${i}; for (let j = 0; j < n; j++) s = (s * 31 + j * ${i + 1}) % 1000003; return s;`);
}

let handlers = [];
function serve(n) {
  let t = 0;
  for (let i = 0; i < handlers.length; i++) t += handlers[i](n);
  return t;
}

process.stdin.on("data", (line) => {
  process.stdin.pause();
  const ms = parseInt(String(line), 10) || 1000;
  const cpu0 = process.cpuUsage();
  handlers = Array.from({ length: N }, (_, i) => makeHandler(i));
  const until = Date.now() + ms;
  let total = 0;
  const tick = () => {
    total += serve(200);
    if (Date.now() < until) setImmediate(tick);
    else {
      const cpu = process.cpuUsage(cpu0);
      process.stdout.write(`done ${total} cpu_us ${cpu.user + cpu.system}\n`);
      process.stdin.resume();     // then idle until stdin ends
      process.stdin.on("end", () => process.exit(0));
    }
  };
  tick();
});
