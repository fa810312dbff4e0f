'use strict';
// A helper in a file of its own, required by cross.js: small and hot, so TurboFan inlines it into
// cross.js's loop, and V8's profiler never gives it a node of its own.
function mix(h, c) {
  return (Math.imul(h ^ c, 0x9e3779b1) + (h >>> 7) + Math.imul(c, c ^ h)) | 0;  // HOT:mix
}
module.exports = { mix };
