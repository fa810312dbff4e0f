'use strict';
// nodeflame's demo program: a small "web shop" request handler that serves
// fake requests in a loop, as fast as it can, until it is killed.
//
// Main thread, per request: parseRequest (JSON.parse + regex validation),
// matchRoute (a table of route regexes), a handler (searchProducts sorts and
// filters, renderProductPage builds HTML with escapeHtml), then computeEtag
// (a string hash) and JSON.stringify of the response.
// Worker thread "thumbnailer": resizeImage and encodeThumbnail, numeric work.
//
// Prints one line {"ready": pid, "node": version} once the worker runs.
// Exits when stdin closes (so it never outlives the process that started it).
const { Worker, isMainThread, parentPort } = require('worker_threads');

const CHUNK_MS = 10;  // run this long, then let the event loop turn

if (!isMainThread) {
  // ----------------------------------------------------------- worker: thumbnails
  const W = 96, H = 96;
  const src = new Float64Array(W * 4 * H * 4);
  for (let i = 0; i < src.length; i++) src[i] = (i * 2654435761) % 255;

  // Both bodies are unrolled so that they are too big for TurboFan to inline
  // into work(): each stays a frame of its own for every backend.
  function resizeImage(pixels, w, h) {
    // 4x4 box filter: (4w x 4h) -> (w x h)
    const out = new Float64Array(w * h);
    const sw = w * 4;
    for (let y = 0; y < h; y++) {
      const r0 = y * 4 * sw, r1 = r0 + sw, r2 = r1 + sw, r3 = r2 + sw;
      for (let x = 0; x < w; x++) {
        const c = x * 4;
        const a = pixels[r0 + c] + pixels[r0 + c + 1] + pixels[r0 + c + 2] + pixels[r0 + c + 3];
        const b = pixels[r1 + c] + pixels[r1 + c + 1] + pixels[r1 + c + 2] + pixels[r1 + c + 3];
        const d = pixels[r2 + c] + pixels[r2 + c + 1] + pixels[r2 + c + 2] + pixels[r2 + c + 3];
        const e = pixels[r3 + c] + pixels[r3 + c + 1] + pixels[r3 + c + 2] + pixels[r3 + c + 3];
        const edge = Math.abs(a - b) + Math.abs(b - d) + Math.abs(d - e) + Math.abs(a - e);
        const sharp = (a + b + d + e) / 16 + (edge > 400 ? 0.25 : edge > 200 ? 0.125 : 0) * (a - e) / 4;
        out[y * w + x] = sharp < 0 ? 0 : sharp > 255 ? 255 : sharp;
      }
    }
    return out;
  }

  function encodeThumbnail(pixels) {
    // PNG-like: "sub" filter, then CRC-32 and Adler-32 over the filtered bytes
    let crc = 0xffffffff, s1 = 1, s2 = 0, prev = 0;
    for (let i = 0; i < pixels.length; i++) {
      const v = pixels[i] | 0;
      const up = i >= 96 ? pixels[i - 96] | 0 : 0;
      const ul = i >= 97 ? pixels[i - 97] | 0 : 0;
      const p = prev + up - ul;  // Paeth predictor
      const pa = Math.abs(p - prev), pb = Math.abs(p - up), pc = Math.abs(p - ul);
      const pred = pa <= pb && pa <= pc ? prev : pb <= pc ? up : ul;
      const f = (v - pred) & 0xff;
      prev = v;
      let c = (crc ^ f) & 0xff;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crc = (crc >>> 8) ^ c;
      s1 = (s1 + f) % 65521;
      s2 = (s2 + s1) % 65521;
      if ((i & 1023) === 1023) {
        crc = (crc ^ (s2 << 16 | s1)) >>> 0;
        s1 = (s1 * 3 + 1) % 65521;
        s2 = (s2 * 5 + 7) % 65521;
      }
    }
    return ((crc ^ 0xffffffff) >>> 0) ^ ((s2 << 16) | s1);
  }

  let made = 0;
  const work = () => {
    const end = Date.now() + CHUNK_MS;
    while (Date.now() < end) {
      const small = resizeImage(src, W, H);
      made += encodeThumbnail(small) & 1;
    }
    setImmediate(work);
  };
  parentPort.postMessage('started');
  work();
} else {
  // ----------------------------------------------------------- main: requests
  const products = [];
  const words = ['red', 'blue', 'green', 'lamp', 'chair', 'table', 'mug', 'desk', 'sofa', 'rug', '<b>sale</b>', 'oak & pine'];
  for (let i = 0; i < 400; i++) {
    products.push({
      id: i,
      name: `${words[i % words.length]} ${words[(i * 7) % words.length]} ${i}`,
      price: ((i * 7919) % 10000) / 100,
      tags: [words[i % 5], words[(i * 3) % words.length]],
      stock: (i * 31) % 17,
    });
  }

  const ROUTES = [
    [/^\/products\/(\d+)$/, 'renderProductPage'],
    [/^\/search\?q=([\w%]+)(?:&sort=(price|name))?$/, 'searchProducts'],
    [/^\/users\/([a-z0-9_]{3,16})\/cart$/, 'showCart'],
    [/^\/health$/, 'health'],
  ];
  const HEADER_RE = /^[A-Za-z-]+$/;
  const UA_RE = /(Mozilla|curl|Go-http-client)\/([\d.]+)/;

  function parseRequest(raw) {
    const req = JSON.parse(raw);
    for (const k of Object.keys(req.headers)) {
      if (!HEADER_RE.test(k)) throw new Error(`bad header ${k}`);
    }
    const ua = UA_RE.exec(req.headers['User-Agent'] || '');
    req.client = ua ? ua[1] : 'unknown';
    return req;
  }

  function matchRoute(path) {
    for (const [re, handler] of ROUTES) {
      const m = re.exec(path);
      if (m) return { handler, params: m.slice(1) };
    }
    return { handler: 'notFound', params: [] };
  }

  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  }

  function renderProductPage(params) {
    const p = products[Number(params[0]) % products.length];
    let html = '<html><head><title>' + escapeHtml(p.name) + '</title></head><body>';
    html += '<h1>' + escapeHtml(p.name) + '</h1><p class="price">$' + p.price.toFixed(2) + '</p><ul>';
    for (let i = 0; i < 30; i++) {
      const q = products[(p.id + i * 13) % products.length];
      html += '<li><a href="/products/' + q.id + '">' + escapeHtml(q.name) + '</a> ' + q.tags.map(escapeHtml).join(', ') + '</li>';
    }
    return html + '</ul></body></html>';
  }

  function searchProducts(params) {
    const q = decodeURIComponent(params[0]);
    const matches = (p) => p.name.includes(q) || p.tags.includes(q);
    const hits = products.filter(matches);
    const key = params[1] || 'price';
    const byKey = (a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : a.id - b.id);
    hits.sort(byKey);
    return JSON.stringify(hits.slice(0, 50));
  }

  function showCart(params) {
    const items = [];
    for (let i = 0; i < 20; i++) items.push(products[(params[0].length * 37 + i * 11) % products.length]);
    const total = items.reduce((s, p) => s + p.price, 0);
    return JSON.stringify({ user: params[0], items, total });
  }

  const HANDLERS = { renderProductPage, searchProducts, showCart, health: () => 'ok', notFound: () => 'not found' };

  function computeEtag(body) {
    let h1 = 0x811c9dc5, h2 = 0;
    for (let i = 0; i < body.length; i++) {
      const c = body.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 16777619);
      h2 = (h2 + c * (i + 1)) | 0;
    }
    return (h1 >>> 0).toString(16) + '-' + (h2 >>> 0).toString(16);
  }

  function handleRequest(raw) {
    const req = parseRequest(raw);
    const route = matchRoute(req.path);
    const body = HANDLERS[route.handler](route.params, req);
    const etag = computeEtag(body);
    return JSON.stringify({ status: route.handler === 'notFound' ? 404 : 200, etag, length: body.length });
  }

  const PATHS = ['/products/17', '/search?q=lamp&sort=price', '/users/alice_01/cart', '/products/233',
                 '/search?q=oak&sort=name', '/health', '/nope', '/search?q=red'];
  const AGENTS = ['Mozilla/5.0 (X11; Linux x86_64)', 'curl/8.5.0', 'Go-http-client/1.1'];
  function makeRequest(i) {
    return JSON.stringify({
      method: 'GET', path: PATHS[i % PATHS.length],
      headers: { Host: 'shop.example', 'User-Agent': AGENTS[i % AGENTS.length], Accept: 'text/html', 'X-Request-Id': String(i) },
    });
  }

  let served = 0;
  const serve = () => {
    const end = Date.now() + CHUNK_MS;
    while (Date.now() < end) {
      handleRequest(makeRequest(served));
      served++;
    }
    setImmediate(serve);
  };

  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));

  const w = new Worker(__filename, { name: 'thumbnailer' });
  w.unref();
  w.once('message', () => {
    process.stdout.write(JSON.stringify({ ready: process.pid, node: process.version }) + '\n');
    serve();
  });
}
