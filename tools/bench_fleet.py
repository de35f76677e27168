#!/usr/bin/env python3
"""The monitor's own cost as a fleet grows: `capwatch monitor --headless --discover file:…`
watching 1 and then N real `capwatch serve` processes (the bundled model, 127.0.0.1, one worker
and one ONNX Runtime thread each), with the shipped config's probe intervals (health every 30 s,
a cycle of 5 captions every 10 s) unless --fast.

For each fleet size it reports the monitor process's CPU (utime + stime from /proc over the
measured window, as % of one core), its RSS at the end and its peak (VmHWM), and, once the
fleet runs, how long a replica added to the file_sd list takes to be probed (from the file
write to its first test line). Standard library only; `make bench-fleet` builds the release
binary and runs it.

Usage: python3 tools/bench_fleet.py [--instances 50] [--warmup 30] [--window 120]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "capwatch")
TICKS = os.sysconf("SC_CLK_TCK")


def start_server():
    """A `capwatch serve` on 127.0.0.1:0; returns (process, url) once it is ready."""
    process = subprocess.Popen(
        [BINARY, "serve", "--port", "0", "--workers", "1", "--intra-op-threads", "1", "--model", "models/default"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUST_LOG": "warn,capwatch=info"},
    )
    deadline = time.time() + 120
    url = None
    while time.time() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if match:
            url = match.group(0)
            break
    if url is None:
        process.kill()
        sys.exit("a server printed no URL")
    # Keep reading its log so that it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
    import urllib.request

    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2) as answer:
                if answer.status == 200:
                    return process, url
        except Exception:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{url} never became ready")


def write_targets(path, urls):
    groups = [{"targets": [url.removeprefix("http://")], "labels": {"name": f"replica-{i}"}} for i, url in enumerate(urls)]
    temporary = path + ".tmp"
    with open(temporary, "w") as out:
        json.dump(groups, out)
    os.replace(temporary, path)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_kib(pid):
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


class Lines:
    """The monitor's stdout, each line with the time it arrived."""

    def __init__(self, stream):
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self.lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def first(self, needle, since, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for at, line in self.lines:
                    if at >= since and needle in line:
                        return at
            time.sleep(0.05)
        return None


def measure(servers, extra, args, scratch):
    """One monitor over `servers` (+ `extra` added later); its figures."""
    config_text = open(os.path.join(ROOT, "config", "monitoring_config.yaml")).read()
    logs = os.path.join(scratch, f"logs-{len(servers)}")
    config_text = config_text.replace("  dir: logs", f"  dir: {logs}")
    if args.fast:
        config_text = config_text.replace("health_interval_s: 30", "health_interval_s: 1")
        config_text = config_text.replace("inference_interval_s: 10", "inference_interval_s: 2")
    config = os.path.join(scratch, f"config-{len(servers)}.yaml")
    open(config, "w").write(config_text)
    targets = os.path.join(scratch, f"targets-{len(servers)}.json")
    urls = [url for _, url in servers]
    write_targets(targets, urls)
    monitor = subprocess.Popen(
        [BINARY, "monitor", "--headless", "--config", config, "--discover", f"file:{targets}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = Lines(monitor.stdout)
    started = time.time()
    joined = lines.first(f"joined", started, 60)
    time.sleep(args.warmup)
    cpu_start, wall_start = cpu_seconds(monitor.pid), time.time()
    added_after = None
    if extra is not None:
        # Half-way through the window, a replica joins the list.
        time.sleep(args.window / 2)
        written = time.time()
        write_targets(targets, urls + [extra[1]])
        tested = lines.first(f"[replica-{len(urls)}] ", written, 60)
        added_after = None if tested is None else tested - written
        time.sleep(max(0.0, args.window - (time.time() - wall_start)))
    else:
        time.sleep(args.window)
    cpu_end, wall_end = cpu_seconds(monitor.pid), time.time()
    rss, peak = memory_kib(monitor.pid)
    monitor.terminate()
    monitor.wait(timeout=30)
    return {
        "instances": len(servers),
        "cpu_percent_of_a_core": 100.0 * (cpu_end - cpu_start) / (wall_end - wall_start),
        "rss_mib": rss / 1024,
        "peak_rss_mib": peak / 1024,
        "first_join_s": None if joined is None else joined - started,
        "added_replica_probed_after_s": added_after,
        "window_s": wall_end - wall_start,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the window starts")
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured")
    parser.add_argument("--fast", action="store_true", help="health every 1 s, a cycle every 2 s")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: run `cargo build --release` (make bench-fleet does)")
    scratch = tempfile.mkdtemp(prefix="capwatch-bench-fleet-")
    servers = []
    try:
        print(f"starting {args.instances + 1} servers…", flush=True)
        for _ in range(args.instances + 1):
            servers.append(start_server())
        cpu = open("/proc/cpuinfo").read()
        model = re.search(r"model name\s*:\s*(.*)", cpu)
        print(f"machine: {os.cpu_count()} CPUs, {model.group(1) if model else '?'}")
        intervals = "health 1 s, cycle 2 s" if args.fast else "health 30 s, a cycle of 5 captions every 10 s"
        print(f"method: monitor --headless --discover file:…, {intervals}; warm-up {args.warmup:.0f} s, window {args.window:.0f} s")
        results = [measure(servers[:1], None, args, scratch), measure(servers[: args.instances], servers[args.instances], args, scratch)]
        print()
        print("| instances | monitor CPU (% of a core) | RSS (MiB) | peak RSS (MiB) | first join (s) | added replica probed after (s) |")
        print("|---|---|---|---|---|---|")
        for r in results:
            added = "—" if r["added_replica_probed_after_s"] is None else f"{r['added_replica_probed_after_s']:.2f}"
            first = "—" if r["first_join_s"] is None else f"{r['first_join_s']:.2f}"
            print(
                f"| {r['instances']} | {r['cpu_percent_of_a_core']:.2f} | {r['rss_mib']:.1f} | {r['peak_rss_mib']:.1f} | {first} | {added} |"
            )
        print()
        print(json.dumps(results))
    finally:
        for process, _ in servers:
            process.kill()
        for process, _ in servers:
            process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
