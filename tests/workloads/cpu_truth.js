'use strict';
// The CPU time each phase of a workload's rounds took: what a sampler of CPU time is checked against (a busy
// machine does not skew it by descheduling the thread mid-phase, as it does wall-clock time).
//
//   const truth = new PhaseCpu(['geometry', 'lexer']);
//   truth.start(); geometry(); truth.end('geometry'); lexer(); truth.end('lexer');
//   truth.stats() -> {geometry: us, lexer: us}
//
// process.cpuUsage() (getrusage(RUSAGE_SELF), which brings the running thread's time up to date; the
// thread's own figure, threadCpuUsage() or /proc/thread-self/schedstat, moves a scheduler tick at a time)
// is read at the phase boundaries of every `every`-th round only: a system call at every boundary, one
// every ~50 us, skewed where the samplers' samples fell (node 24, inline.js: perf engine 19.5 %, ptrace
// engine 17 % of the samples for 21 % of the wall time, 20.5-22 % without the calls).  The rounds are
// alike, so the shares are those of all rounds; compare shares.  A phase's span from one reading to the
// next also holds one reading's own cost (~1-2 us): measured in each measured round by a reading right
// before, and the mean of the lower 90 % of those taken off each phase of each measured round (one
// round's own figure also holds what V8's helper threads ran meanwhile: taken off round by round, under
// load it put inline.js's geometry 3 points low).
class PhaseCpu {
  constructor(phases, every = 8) {
    this.phases = phases;
    this.every = every;
    this.cpu = Object.fromEntries(phases.map((p) => [p, 0]));
    this.costs = new Float64Array(64);   // us (whole: cpuUsage's resolution) -> rounds
    this.rounds = 0;
    this.measured = 0;
    this.on = false;
    this.last = 0;
  }

  static now() {
    const u = process.cpuUsage();
    return u.user + u.system;
  }

  start() {
    this.on = this.rounds++ % this.every === 0;
    if (!this.on) return;
    const u0 = PhaseCpu.now();
    this.last = PhaseCpu.now();
    this.costs[Math.min(Math.max(this.last - u0, 0), this.costs.length - 1)]++;
    this.measured++;
  }

  end(phase) {
    if (!this.on) return;
    const u = PhaseCpu.now();
    this.cpu[phase] += u - this.last;
    this.last = u;
  }

  readingCost() {
    let left = 0.9 * this.measured, sum = 0;
    for (let k = 0; k < this.costs.length && left > 0; k++) {
      const n = Math.min(this.costs[k], left);
      sum += n * k;
      left -= n;
    }
    return this.measured ? sum / (0.9 * this.measured) : 0;
  }

  stats() {
    const c = this.measured * this.readingCost();
    return Object.fromEntries(this.phases.map((p) => [p, this.cpu[p] - c]));
  }
}

module.exports = { PhaseCpu };
