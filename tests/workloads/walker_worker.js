'use strict';
// worker thread of the walker workload: one hot function, forever until terminated
// (walker_main.js --control: between two loops it sleeps while the main thread asks for a pause)
const { workerData } = require('worker_threads');
const ctl = workerData && workerData.ctl ? new Int32Array(workerData.ctl) : null;
function workerSpin(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + i * i) % 999983;
  return s;
}
// called through one megamorphic call site (five targets), so that TurboFan inlines workerSpin nowhere
const tasks = [workerSpin, (n) => n + 1, (n) => n + 2, (n) => n + 3, (n) => n + 4];
function loop() {
  for (let i = 0; i < tasks.length; i++) tasks[i](200000);
  if (ctl !== null) {
    // taken after every loop (a branch only a pause took would deoptimize loop when first taken): says
    // in ctl[1] whether a pause is asked, sleeps while it is; else Atomics.wait returns at once
    for (;;) {
      Atomics.store(ctl, 1, Atomics.load(ctl, 0));
      if (Atomics.wait(ctl, 0, 1, 50) === 'not-equal') break;
    }
    Atomics.store(ctl, 1, 0);
  }
  setImmediate(loop);
}
loop();
