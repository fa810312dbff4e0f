// A small "service" for the source-map tests: three hot functions in TypeScript,
// compiled by tsc or bundled and minified by esbuild, then profiled live.
// It prints "ready" once warm and runs until stdin closes or 60 s pass (or --seconds=N).
import { checksum } from "./lib/hash";

// no @types/node needed
declare const process: any;
declare function setImmediate(f: () => void): void;

interface Order {
  id: number;
  amount: number;
  items: number[];
}

export class OrderBook {
  private readonly orders: Order[] = [];

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      this.orders.push({ id: i, amount: (i * 37) % 101, items: [i % 7, i % 11, i % 13] });
    }
  }

  scoreOrders(factor: number): number {
    let score = 0;
    for (const order of this.orders) {
      for (const item of order.items) {
        score = (score + order.amount * item * factor) % 1000003;
      }
    }
    return score;
  }
}

export function countPrimes(limit: number): number {
  let count = 0;
  for (let n = 2; n < limit; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) {
      if (n % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

function serve(book: OrderBook, until: number): number {
  let acc = 0;
  while (Date.now() < until) {
    acc += book.scoreOrders(3);
    acc += countPrimes(4000);
    acc += checksum("order-" + (acc % 97), 40);
  }
  return acc;
}

// --seconds=N: run N seconds whatever stdin does (for programs started by `nodeflame record -- ...`)
const fixed = process.argv.find((a: string) => a.startsWith("--seconds="));
const book = new OrderBook(2000);
const deadline = Date.now() + (fixed ? Number(fixed.slice(10)) : 60) * 1000;
serve(book, Date.now() + 300);
process.stdout.write("ready\n");
if (!fixed) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
(function loop(): void {
  if (Date.now() > deadline) process.exit(0);
  serve(book, Date.now() + 50);
  setImmediate(loop);
})();
