'use strict';
// second file of the walker workload: a plain function exported to main
function libWork(n) {
  let s = 0;
  for (let i = 0; i < n; i++) s = (s + Math.sqrt(i * 7 + s)) % 1e9;
  return s;
}
module.exports = { libWork };
