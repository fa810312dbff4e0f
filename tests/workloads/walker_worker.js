'use strict';
// worker thread of the walker workload: one hot function, forever until terminated
function workerSpin(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + i * i) % 999983;
  return s;
}
// called through one megamorphic call site (five targets), so that TurboFan inlines workerSpin nowhere
const tasks = [workerSpin, (n) => n + 1, (n) => n + 2, (n) => n + 3, (n) => n + 4];
function loop() {
  for (let i = 0; i < tasks.length; i++) tasks[i](200000);
  setImmediate(loop);
}
loop();
