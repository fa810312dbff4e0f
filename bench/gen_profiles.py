"""Generate Node-like folded profiles, deterministically (seeded).

    python bench/gen_profiles.py [--out DIR] [--size small|large|all] [--seed N] [--unsorted]

Sizes:

- ``small``: 1,000,000 samples over 20,000 distinct stacks -> ``node-1m-20k.folded``
- ``large``: 10,000,000 samples over 200,000 distinct stacks -> ``node-10m-200k.folded``

Stacks look like what ``node --perf-basic-prof`` + perf + stackcollapse-perf.pl
produce for a web server: a libuv/node C++ entry chain (``_start`` ...
``uv_run`` ... ``Builtins_JSEntryTrampoline``), then a walk through a call graph
of JavaScript functions (``node:internal/...`` internals, ``/app/node_modules/...``
dependencies, ``/app/src/...`` application files, all with ``:line``), ending in
JS, in V8 builtins, or in C++ runtime/libc frames that may enter the kernel.
Mean depth is about 40.  Counts are heavy-tailed (Pareto).  Lines are written
sorted, as stackcollapse*.pl writes them, unless ``--unsorted``.

Everything is derived from ``random.Random(seed)``, so a (size, seed) pair
always gives the same bytes.
"""
from __future__ import annotations

import argparse
import bisect
import os
import random
import sys

SIZES = {
    "small": (1_000_000, 20_000, "node-1m-20k"),
    "large": (10_000_000, 200_000, "node-10m-200k"),
}

ENTRY = ["_start", "__libc_start_main", "main", "node::Start(int, char**)",
         "node::NodeMainInstance::Run()", "node::SpinEventLoop(node::Environment*)", "uv_run"]
JS_ENTRY = ["node::InternalCallbackScope::Close()", "node::InternalMakeCallback(node::Environment*, "
            "v8::Local<v8::Object>, v8::Local<v8::Object>, v8::Local<v8::Function>, int, "
            "v8::Local<v8::Value>*, node::async_context)",
            "v8::Function::Call(v8::Local<v8::Context>, v8::Local<v8::Value>, int, v8::Local<v8::Value>*)",
            "v8::internal::Execution::Call(v8::internal::Isolate*, v8::internal::Handle<v8::internal::Object>, "
            "v8::internal::Handle<v8::internal::Object>, int, v8::internal::Handle<v8::internal::Object>*)",
            "Builtins_JSEntry", "Builtins_JSEntryTrampoline"]
PHASES = [
    (["uv__io_poll", "uv__stream_io", "uv__read", "node::LibuvStreamWrap::OnUvRead(long, uv_buf_t const*)",
      "node::EmitToJSStreamListener::OnStreamRead(long, uv_buf_t const&)",
      "node::StreamBase::CallJSOnreadMethod(long, v8::Local<v8::ArrayBuffer>, unsigned long, "
      "node::StreamBase::StreamBaseJSChecks)"],
     ["onStreamRead node:internal/stream_base_commons:190"]),
    (["uv__run_timers", "node::Environment::RunTimers(uv_timer_s*)"],
     ["processTimers node:internal/timers:512", "listOnTimeout node:internal/timers:569"]),
    (["uv__run_check", "node::Environment::CheckImmediate(uv_check_s*)"],
     ["processImmediate node:internal/timers:476"]),
    (["uv__io_poll", "uv__server_io", "node::ConnectionWrap<node::TCPWrap, uv_tcp_s>::OnConnection(uv_stream_s*, int)"],
     ["onconnection node:net:2049", "emit node:events:517", "connectionListenerInternal node:_http_server:611"]),
    (["uv__io_poll", "uv__async_io", "node::PerIsolatePlatformData::FlushForegroundTasksInternal()"],
     ["processTicksAndRejections node:internal/process/task_queues:95"]),
]
NODE_FUNCS = [
    "emit node:events:517", "processTicksAndRejections node:internal/process/task_queues:95",
    "Readable.push node:internal/streams/readable:234", "readableAddChunk node:internal/streams/readable:249",
    "addChunk node:internal/streams/readable:324", "parserOnHeadersComplete node:_http_common:71",
    "parserOnIncoming node:_http_server:1047", "ServerResponse.end node:_http_outgoing:991",
    "write_ node:_http_outgoing:868", "_writeRaw node:_http_outgoing:390",
    "Socket._writeGeneric node:net:931", "writeGeneric node:internal/stream_base_commons:147",
    "Writable.write node:internal/streams/writable:334", "writeOrBuffer node:internal/streams/writable:385",
    "Hash.update node:internal/crypto/hash:101", "Hash.digest node:internal/crypto/hash:116",
    "readFileSync node:fs:453", "tryReadSync node:fs:422", "Buffer.toString node:buffer:826",
    "JSON.stringify node:internal/util/inspect:0", "format node:internal/util/inspect:2144",
    "formatWithOptions node:internal/util/inspect:2139", "afterWrite node:internal/streams/writable:467",
    "Module._compile node:internal/modules/cjs/loader:1241", "require node:internal/modules/cjs/helpers:177",
    "Zlib.processCallback node:zlib:599", "deflateSync node:zlib:829", "randomUUID node:internal/crypto/random:547",
    "URL node:internal/url:775", "nextTick node:internal/process/task_queues:66",
]
BUILTINS = [
    "Builtins_InterpreterEntryTrampoline", "Builtins_ArrayMap", "Builtins_ArrayForEach",
    "Builtins_ArrayPrototypePush", "Builtins_ArrayPrototypeJoin", "Builtins_StringPrototypeReplace",
    "Builtins_StringPrototypeSplit", "Builtins_JsonParse", "Builtins_JsonStringify", "Builtins_RegExpReplace",
    "Builtins_RegExpPrototypeExec", "Builtins_ObjectKeys", "Builtins_ObjectAssign", "Builtins_CallFunction_ReceiverIsAny",
    "Builtins_KeyedLoadIC_Megamorphic", "Builtins_LoadIC", "Builtins_StoreIC", "Builtins_CEntry_Return1_ArgvOnStack_NoBuiltinExit",
    "Builtins_PromiseConstructor", "Builtins_AsyncFunctionAwaitResolveClosure", "Builtins_RunMicrotasks",
]
NATIVE_TAILS = [
    ["v8::internal::Runtime_StringReplaceRegExpWithString(int, unsigned long*, v8::internal::Isolate*)",
     "v8::internal::RegExpImpl::IrregexpExec(v8::internal::Isolate*, v8::internal::Handle<v8::internal::JSRegExp>, "
     "v8::internal::Handle<v8::internal::String>, int, v8::internal::Handle<v8::internal::RegExpMatchInfo>)"],
    ["v8::internal::Runtime_AllocateInYoungGeneration(int, unsigned long*, v8::internal::Isolate*)",
     "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, "
     "v8::GCCallbackFlags)", "v8::internal::ScavengerCollector::CollectGarbage()",
     "v8::internal::Scavenger::ScavengePage(v8::internal::MemoryChunk*)"],
    ["v8::internal::JsonParser<unsigned char>::ParseJson(v8::internal::Handle<v8::internal::Object>)",
     "v8::internal::JsonParser<unsigned char>::ParseJsonValue()"],
    ["node::crypto::Hash::HashUpdate(v8::FunctionCallbackInfo<v8::Value> const&)", "EVP_DigestUpdate",
     "sha256_block_data_order_avx2"],
    ["node::fs::Read(v8::FunctionCallbackInfo<v8::Value> const&)", "uv_fs_read", "__GI___libc_read"],
    ["node::StreamBase::WriteBuffer(v8::FunctionCallbackInfo<v8::Value> const&)", "uv_try_write",
     "uv__try_write", "__GI___writev"],
    ["node::Buffer::(anonymous namespace)::StringSlice<(node::encoding)1>(v8::FunctionCallbackInfo<v8::Value> const&)",
     "v8::String::NewFromUtf8(v8::Isolate*, char const*, v8::NewStringType, int)", "__memmove_avx_unaligned_erms"],
    ["node::(anonymous namespace)::ZlibContext::Work()", "deflate", "deflate_slow", "longest_match"],
    ["v8::internal::Runtime_CompileLazy(int, unsigned long*, v8::internal::Isolate*)",
     "v8::internal::Compiler::Compile(v8::internal::Isolate*, v8::internal::Handle<v8::internal::JSFunction>, "
     "v8::internal::Compiler::ClearExceptionFlag, v8::internal::IsCompiledScope*)",
     "v8::internal::parsing::ParseFunction(v8::internal::ParseInfo*, v8::internal::Handle<v8::internal::SharedFunctionInfo>, "
     "v8::internal::Isolate*, v8::internal::parsing::ReportStatisticsMode)"],
]
KERNEL_TAILS = [
    ["entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_writev", "do_writev", "vfs_writev",
     "sock_write_iter", "tcp_sendmsg", "tcp_sendmsg_locked", "tcp_push", "__tcp_push_pending_frames",
     "tcp_write_xmit", "__tcp_transmit_skb", "ip_queue_xmit"],
    ["entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_read", "ksys_read", "vfs_read",
     "ext4_file_read_iter", "filemap_read", "copy_page_to_iter", "copy_user_enhanced_fast_string"],
    ["asm_exc_page_fault", "exc_page_fault", "do_user_addr_fault", "handle_mm_fault", "__handle_mm_fault",
     "do_anonymous_page", "clear_page_erms"],
]
PACKAGES = ["express", "body-parser", "lodash", "mongoose", "mongodb", "pg", "ioredis", "axios", "graphql",
            "ajv", "pino", "winston", "debug", "ws", "socket.io", "@babel/core", "moment", "uuid", "jsonwebtoken",
            "bcryptjs", "sequelize", "knex", "handlebars", "ejs", "qs", "iconv-lite", "raw-body", "send",
            "serve-static", "cookie", "@aws-sdk/client-s3", "@fastify/ajv-compiler", "react-dom", "zod",
            "protobufjs", "undici", "bluebird", "async", "semver", "yaml"]
APP_DIRS = ["routes", "services", "models", "lib", "middleware", "utils", "controllers", "db", "views", "jobs"]
VERBS = ["get", "find", "load", "save", "update", "validate", "parse", "render", "compute", "build", "resolve",
         "handle", "process", "serialize", "normalize", "transform", "fetch", "check", "apply", "merge", "emit",
         "create", "format", "encode", "decode", "hash", "sort", "filter", "map", "reduce", "walk", "visit"]
NOUNS = ["User", "Order", "Session", "Token", "Cart", "Item", "Invoice", "Request", "Response", "Query", "Row",
         "Schema", "Template", "Node", "Field", "Record", "Payload", "Header", "Route", "Cache", "Entry",
         "Account", "Product", "Event", "Message", "Batch", "Chunk", "Config", "Result", "Value"]
LIBFILES = ["index", "lib/index", "lib/utils", "lib/router/layer", "lib/router/route", "lib/router/index",
            "lib/request", "lib/response", "lib/parser", "lib/compile", "lib/runtime", "dist/index", "dist/cjs/index",
            "lib/connection", "lib/query", "lib/cursor", "lib/document", "lib/schema", "lib/model", "src/core"]


def make_vocab(rng: random.Random, n: int):
    """n JS functions: (label, layer).  Layer 0 = framework entry, higher = deeper."""
    out, seen = [], set()
    while len(out) < n:
        r = rng.random()
        fn = rng.choice(VERBS) + rng.choice(NOUNS)
        if rng.random() < 0.3:
            fn = rng.choice(NOUNS) + ("Service." if rng.random() < 0.5 else ".") + fn
        elif rng.random() < 0.08:
            fn = "(anonymous)"
        line = rng.randint(1, 900)
        if r < 0.45:
            pkg = rng.choice(PACKAGES)
            nested = f"/node_modules/{rng.choice(PACKAGES)}" if rng.random() < 0.1 else ""
            lab = f"{fn} /app/node_modules/{pkg}{nested}/{rng.choice(LIBFILES)}.js:{line}"
        elif r < 0.55:
            lab = rng.choice(NODE_FUNCS)
            lab = lab.rsplit(":", 1)[0] + f":{rng.randint(1, 2500)}" if rng.random() < 0.7 else lab
        else:
            d = rng.choice(APP_DIRS)
            lab = f"{fn} /app/src/{d}/{rng.choice(NOUNS).lower()}{rng.choice(['', 's', 'Helper', 'Store'])}.js:{line}"
        if lab in seen:
            continue
        seen.add(lab)
        out.append((lab, rng.randint(0, 9)))
    return out


def make_graph(rng: random.Random, vocab):
    """Callees of each function with cumulative Zipf weights (first callee most likely)."""
    by_layer = [[] for _ in range(10)]
    for i, (_, layer) in enumerate(vocab):
        by_layer[layer].append(i)
    graph = []
    for i, (_, layer) in enumerate(vocab):
        k = min(1 + int(rng.paretovariate(1.3)), 12)
        callees = []
        for _ in range(k):
            nl = min(9, layer + rng.choice((0, 1, 1, 2)))
            callees.append(rng.choice(by_layer[nl]))
        if rng.random() < 0.05:
            callees.append(i)  # recursion
        cum, acc = [], 0.0
        for r in range(len(callees)):
            acc += 1.0 / (r + 1) ** 1.6
            cum.append(acc)
        graph.append((callees, cum))
    return graph


def gen_stacks(n_stacks: int, seed: int):
    rng = random.Random(seed)
    vocab = make_vocab(rng, max(1500, n_stacks // 12))
    graph = make_graph(rng, vocab)
    labels = [v[0] for v in vocab]
    starts = [i for i, (_, layer) in enumerate(vocab) if layer <= 1]
    start_cum = []
    acc = 0.0
    for r in range(len(starts)):
        acc += 1.0 / (r + 1) ** 1.1
        start_cum.append(acc)
    rand, choice = rng.random, rng.choice
    seen = set()
    out = []
    specials = [("(garbage collector)",), ("(idle)",), ("(program)",),
                tuple(ENTRY) + ("uv__io_poll", "epoll_wait", "entry_SYSCALL_64_after_hwframe", "do_syscall_64",
                                "__x64_sys_epoll_wait", "do_epoll_wait", "schedule_hrtimeout_range")]
    for s in specials:
        seen.add(s)
        out.append(s)
    while len(out) < n_stacks:
        phase_native, phase_js = PHASES[min(int(rand() ** 2 * len(PHASES)), len(PHASES) - 1)]
        st = ENTRY + phase_native + JS_ENTRY + phase_js
        depth_js = max(4, int(rng.gauss(18, 6)))
        f = starts[bisect.bisect(start_cum, rand() * start_cum[-1])]
        for _ in range(depth_js):
            st.append(labels[f])
            if rand() < 0.15:
                st.append("Builtins_InterpreterEntryTrampoline")
            callees, cum = graph[f]
            f = callees[bisect.bisect(cum, rand() * cum[-1])]
        r = rand()
        if r < 0.25:
            st.append(choice(BUILTINS))
        elif r < 0.6:
            tail = choice(NATIVE_TAILS)
            st.extend(tail[: rng.randint(1, len(tail))])
            if rand() < 0.3:
                kt = choice(KERNEL_TAILS)
                st.extend(kt[: rng.randint(2, len(kt))])
        key = tuple(st)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def gen_counts(n: int, total: int, seed: int):
    rng = random.Random(seed + 1)
    w = [rng.paretovariate(1.4) for _ in range(n)]
    s = sum(w)
    counts = [max(1, int(x / s * total)) for x in w]
    diff = total - sum(counts)
    big = max(range(n), key=counts.__getitem__)
    counts[big] += diff
    assert counts[big] >= 1 and sum(counts) == total
    return counts


def generate(path: str, samples: int, n_stacks: int, seed: int = 1, sort: bool = True) -> str:
    stacks = gen_stacks(n_stacks, seed)
    counts = gen_counts(n_stacks, samples, seed)
    lines = [";".join(s) + f" {c}\n" for s, c in zip(stacks, counts)]
    if sort:
        lines.sort()
    else:
        random.Random(seed + 2).shuffle(lines)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)
    return path


def ensure(size: str, out_dir: str, seed: int = 1, sort: bool = True) -> str:
    """Path of the generated profile for ``size``, generating it if missing."""
    samples, n, stem = SIZES[size]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{stem}-s{seed}{'' if sort else '-unsorted'}.folded")
    if not os.path.exists(path):
        generate(path, samples, n, seed, sort)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    ap.add_argument("--size", choices=("small", "large", "all"), default="all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--unsorted", action="store_true", help="shuffle the lines instead of sorting them")
    a = ap.parse_args(argv)
    for size in (("small", "large") if a.size == "all" else (a.size,)):
        path = ensure(size, a.out, a.seed, not a.unsorted)
        nlines = frames = 0
        with open(path, encoding="utf-8") as fh:
            for ln in fh:
                nlines += 1
                frames += ln.count(";") + 1
        print(f"{path}: {nlines} stacks, mean depth {frames / nlines:.1f}, {os.path.getsize(path) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
