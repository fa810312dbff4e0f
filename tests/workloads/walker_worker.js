'use strict';
// worker thread of the walker workload: one hot function, forever until terminated
function workerSpin(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + i * i) % 999983;
  return s;
}
function loop() {
  workerSpin(200000);
  setImmediate(loop);
}
loop();
