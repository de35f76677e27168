#!/usr/bin/env python3
"""Soak test (`make soak`, SOAK_MIN=30): the dashboard (headless) with its chaos-enabled child,
a bounded load generator on loopback at a fixed rate of valid and invalid images, a `kill -9`
of the child every few minutes and chaos faults in between. Measures what must not degrade or
get lost: dashboard and server RSS and open fds after warm-up, requests sent vs answered,
metrics JSONL lines vs probes (every line parses), restarts, 5xx outside injected faults.

Standard library only. Writes .tmp/soak/report.md and report.json; prints the report.
Usage: tools/soak.py [--minutes 30] [--rate 4] [--kill-every 180] [--fault-every 75]
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".tmp" / "soak"
BINARY = ROOT / "target" / "release" / "capwatch"
# Faults injected between kills (each for FAULT_S seconds); `errors` makes 5xx that are expected.
FAULTS = [
    {"kind": "latency", "latency_ms": 300, "jitter_ms": 100},
    {"kind": "errors", "share": 0.5},
    {"kind": "garbage"},
    {"kind": "slow_decoder", "step_delay_ms": 40},
    {"kind": "unready"},
]
FAULT_S = 20
MAX_IN_FLIGHT = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid):
    """RSS in KiB and open file descriptors of a process (None when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (FileNotFoundError, ProcessLookupError, StopIteration, PermissionError):
        return None


def child_pid(parent):
    # A child belongs to the thread that spawned it: look through every thread.
    children = []
    for task in Path(f"/proc/{parent}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:
            continue
    for pid in children:
        try:
            if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
        except FileNotFoundError:
            continue
    return None


def bodies():
    """(name, bytes, content type, valid) — the valid test images and malformed inputs."""
    valid = [
        (p.name, p.read_bytes(), "image/png" if p.suffix == ".png" else "image/jpeg", True)
        for p in sorted((ROOT / "test_images").iterdir())
        if p.suffix in (".png", ".jpg")
    ]
    png = next(data for name, data, _, _ in valid if name.endswith(".png"))
    rng = random.Random(7)
    flipped = bytearray(png)
    for _ in range(40):
        flipped[rng.randrange(8, len(flipped))] ^= 0xFF
    huge = bytearray(png)
    huge[16:24] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")  # IHDR width, height
    invalid = [
        ("truncated.png", png[: len(png) // 3], "image/png", False),
        ("random.bin", bytes(rng.randrange(256) for _ in range(2048)), "application/octet-stream", False),
        ("text.txt", b"not an image at all", "text/plain", False),
        ("empty", b"", "image/png", False),
        ("bitflips.png", bytes(flipped), "image/png", False),
        ("huge-header.png", bytes(huge), "image/png", False),
    ]
    return valid, invalid


class Load:
    """Sends `rate` requests a second (at most MAX_IN_FLIGHT at once; beyond that a tick is skipped)."""

    def __init__(self, url_of, rate, stop):
        self.url_of, self.rate, self.stop = url_of, rate, stop
        self.valid, self.invalid = bodies()
        self.lock = threading.Lock()
        self.events = []  # (time, valid, outcome) outcome: status int or an error name
        self.in_flight = 0
        self.skipped = 0

    def one(self, body):
        name, data, content_type, valid = body
        started = time.time()
        request = urllib.request.Request(self.url_of() + "/caption", data=data, method="POST")
        request.add_header("content-type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                outcome = response.status
        except urllib.error.HTTPError as err:
            try:
                kind = json.loads(err.read()).get("error_type", "?")
            except (ValueError, AttributeError):
                kind = "?"
            outcome = err.code
            name = f"{name} ({kind})"
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, OSError) as err:
            reason = getattr(err, "reason", err)
            outcome = "timeout" if "timed out" in str(reason) else "refused" if "refused" in str(reason) else "error"
        with self.lock:
            self.events.append((started, valid, outcome, name))
            self.in_flight -= 1

    def run(self):
        rng = random.Random(11)
        period = 1.0 / self.rate
        next_at = time.time()
        with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
            while not self.stop.is_set():
                next_at += period
                body = rng.choice(self.invalid) if rng.random() < 0.2 else rng.choice(self.valid)
                with self.lock:
                    busy = self.in_flight >= MAX_IN_FLIGHT
                    if not busy:
                        self.in_flight += 1
                if busy:
                    self.skipped += 1
                else:
                    pool.submit(self.one, body)
                time.sleep(max(0.0, next_at - time.time()))


def post_json(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MIN", 30)))
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second from the load generator")
    parser.add_argument("--kill-every", type=float, default=180.0, help="seconds between kill -9 of the child")
    parser.add_argument("--fault-every", type=float, default=75.0, help="seconds between chaos faults")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before RSS and fds are baselined")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / "logs"
    if logs.exists():
        for f in logs.iterdir():
            f.unlink()
    port = free_port()
    config = (ROOT / "config" / "monitoring_config.yaml").read_text()
    for old, new in [
        ("port: 8000", f"port: {port}"),
        ("  dir: logs", f"  dir: {logs}"),
        ("health_interval_s: 30", "health_interval_s: 2"),
        ("inference_interval_s: 10", "inference_interval_s: 2"),
        ("max_restarts: 5 ", "max_restarts: 1000 "),
    ]:
        assert old in config, old
        config = config.replace(old, new)
    (OUT / "config.yaml").write_text(config)
    url = f"http://127.0.0.1:{port}"
    duration = args.minutes * 60
    dash = subprocess.Popen(
        [str(BINARY), "--headless", "--chaos", "--config", str(OUT / "config.yaml")],
        cwd=ROOT,
        stdout=open(OUT / "dashboard.out", "w"),
        stderr=subprocess.STDOUT,
    )
    started = time.time()
    while time.time() - started < 60:
        try:
            urllib.request.urlopen(url + "/ready", timeout=2).read()
            break
        except Exception:
            time.sleep(0.2)
    print(f"soak: {args.minutes:g} min, dashboard PID {dash.pid}, server {url}, {args.rate:g} req/s", flush=True)

    stop = threading.Event()
    load = Load(lambda: url, args.rate, stop)
    load_thread = threading.Thread(target=load.run, daemon=True)
    load_thread.start()

    samples = []  # (t, dash rss, dash fds, child pid, child rss, child fds)
    kills, faults = [], []  # kill times; (start, end, kind)
    next_kill = started + args.kill_every
    next_fault = started + args.fault_every / 2
    rng = random.Random(5)
    while time.time() - started < duration:
        now = time.time()
        pid = child_pid(dash.pid)
        d = proc_stats(dash.pid)
        c = proc_stats(pid) if pid else None
        if d:
            samples.append((now - started, d[0], d[1], pid, c[0] if c else None, c[1] if c else None))
        if dash.poll() is not None:
            print("soak: the dashboard exited early", file=sys.stderr)
            break
        if now >= next_kill and pid:
            os.kill(pid, signal.SIGKILL)
            kills.append(now)
            next_kill = now + args.kill_every
            next_fault = max(next_fault, now + 20)
        elif now >= next_fault:
            fault = dict(rng.choice(FAULTS), duration_s=FAULT_S)
            try:
                post_json(url + "/chaos", fault)
                faults.append((now, now + FAULT_S, fault["kind"]))
            except Exception as err:  # the server may be restarting
                print(f"soak: fault not injected: {err}", file=sys.stderr)
            next_fault = now + args.fault_every
        time.sleep(5)
    stop.set()
    load_thread.join(timeout=40)
    time.sleep(1)
    dash.send_signal(signal.SIGINT)
    try:
        exit_code = dash.wait(timeout=60)
    except subprocess.TimeoutExpired:
        dash.kill()
        exit_code = "killed"
    report = analyse(args, started, samples, kills, faults, load, exit_code, logs)
    (OUT / "report.json").write_text(json.dumps(report["data"], indent=2) + "\n")
    (OUT / "samples.json").write_text(json.dumps(samples) + "\n")
    (OUT / "report.md").write_text(report["markdown"])
    print(report["markdown"])
    return 0 if report["data"]["targets_met"] else 1


def analyse(args, started, samples, kills, faults, load, exit_code, logs):
    after = [s for s in samples if s[0] >= args.warmup]
    dash_rss = [s[1] for s in after]
    dash_fds = [s[2] for s in after]
    dash_growth = (dash_rss[-1] - dash_rss[0]) / dash_rss[0] * 100 if len(dash_rss) > 1 else 0.0
    # The server is a new process after every kill: compare samples within each incarnation,
    # from 60 s after it started (its warm-up) to its last sample.
    lives = {}
    for t, _, _, pid, rss, fds in samples:
        if pid and rss:
            lives.setdefault(pid, []).append((t, rss, fds))
    server_growth = []
    for pid, life in lives.items():
        warm = [x for x in life if x[0] - life[0][0] >= 60]
        if len(warm) > 1:
            server_growth.append((warm[-1][1] - warm[0][1]) / warm[0][1] * 100)
    server_rss = [rss for life in lives.values() for _, rss, _ in life]
    server_fds = [fds for life in lives.values() for _, _, fds in life if fds]

    def in_window(t, windows, margin):
        return any(a - margin <= t <= b + margin for a, b in windows)

    # Where a 5xx is what was injected: `errors` faults, `unready` faults (/caption answers 503
    # not_ready), and a killed server's restart (the new one answers 503 not_ready until loaded).
    errors_windows = [(a, b) for a, b, kind in faults if kind in ("errors", "unready")] + [(k, k + 15) for k in kills]
    fault_windows = [(a, b) for a, b, _ in faults]
    restart_windows = [(k, k + 15) for k in kills]
    sent = len(load.events)
    answered = [e for e in load.events if isinstance(e[2], int)]
    unanswered = [e for e in load.events if not isinstance(e[2], int)]
    unexplained_unanswered = [
        e for e in unanswered if not in_window(e[0], restart_windows, 1) and not in_window(e[0], fault_windows, 1)
    ]
    fivexx = [e for e in answered if e[2] >= 500]
    fivexx_outside = [e for e in fivexx if not in_window(e[0], errors_windows, 1)]
    for e in fivexx_outside:
        since_kill = min((e[0] - k for k in kills if k <= e[0]), default=None)
        print(f"soak: 5xx outside injected faults at {e[0] - started:.1f} s ({e[3]}), "
              f"{'no kill before' if since_kill is None else f'{since_kill:.1f} s after a kill'}, "
              f"faults then: {[k for a, b, k in faults if a - 1 <= e[0] <= b + 1]}", file=sys.stderr)
    valid_ok = sum(1 for e in answered if e[1] and e[2] == 200)
    invalid_4xx = sum(1 for e in answered if not e[1] and 400 <= e[2] < 500)
    invalid_answered = sum(1 for e in answered if not e[1])
    wrong_invalid = [e for e in answered if not e[1] and not 400 <= e[2] < 500 and not in_window(e[0], errors_windows, 1)]

    lines = (logs / "service_metrics.jsonl").read_text().splitlines()
    parsed, unparsable = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            unparsable += 1
    cycles = [r for r in parsed if r.get("type") == "cycle"]
    probes_in_records = cycles[-1]["tests"] if cycles else 0
    summaries = sorted(logs.glob("session_summary_*.json"))
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    restarts = summary.get("restarts")
    fault_records = [r for r in parsed if r.get("type") == "fault"]

    data = {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "kills": len(kills),
        "faults_injected": len(faults),
        "fault_kinds": sorted({k for _, _, k in faults}),
        "requests_sent": sent,
        "requests_skipped_at_in_flight_bound": load.skipped,
        "requests_answered": len(answered),
        "unanswered": len(unanswered),
        "unanswered_outside_restarts_and_faults": len(unexplained_unanswered),
        "valid_answered_200": valid_ok,
        "invalid_answered": invalid_answered,
        "invalid_answered_4xx": invalid_4xx,
        "invalid_not_4xx_outside_injected_faults_and_restarts": len(wrong_invalid),
        "http_5xx": len(fivexx),
        "http_5xx_outside_injected_faults_and_restarts": len(fivexx_outside),
        "dashboard_rss_kib_after_warmup": [dash_rss[0], dash_rss[-1]] if dash_rss else None,
        "dashboard_rss_growth_percent": round(dash_growth, 2),
        "dashboard_fds_after_warmup_min_max": [min(dash_fds), max(dash_fds)] if dash_fds else None,
        # RSS at the start, the quarters and the end of the run after warm-up: a leak grows
        # in every quarter, filling bounded buffers (log pane, sparkline) flattens out.
        "dashboard_rss_kib_quarters": [dash_rss[min(len(dash_rss) - 1, i * len(dash_rss) // 4)] for i in range(5)]
        if dash_rss
        else None,
        "server_incarnations": len(lives),
        "server_rss_kib_min_max": [min(server_rss), max(server_rss)] if server_rss else None,
        "server_rss_growth_percent_per_life_max": round(max(server_growth), 2) if server_growth else None,
        "server_fds_min_max": [min(server_fds), max(server_fds)] if server_fds else None,
        "jsonl_lines": len(lines),
        "jsonl_unparsable": unparsable,
        "cycle_records": len(cycles),
        "summary_cycles": summary.get("cycles"),
        "probes_in_last_cycle_record": probes_in_records,
        "summary_tests": summary.get("tests"),
        "fault_records": len(fault_records),
        "summary_restarts": restarts,
        "dashboard_exit_code": exit_code,
    }
    data["targets_met"] = bool(
        dash_growth < 10
        and (not server_growth or max(server_growth) < 10)
        and unparsable == 0
        and len(fivexx_outside) == 0
        and len(unexplained_unanswered) == 0
        and len(wrong_invalid) == 0
        and summary.get("cycles") == len(cycles)
        and restarts is not None
        and restarts >= len(kills)
    )
    outcomes = {}
    for e in load.events:
        if not e[1] or (isinstance(e[2], int) and e[2] >= 500):
            key = (e[3], e[2])
            outcomes[key] = outcomes.get(key, 0) + 1
    data["outcomes_of_invalid_inputs_and_5xx"] = {f"{name} -> {status}": n for (name, status), n in sorted(outcomes.items(), key=str)}
    rows = "\n".join(f"| {k} | {v} |" for k, v in data.items())
    markdown = f"# capwatch soak ({args.minutes:g} min)\n\n| measure | value |\n|---|---|\n{rows}\n"
    return {"data": data, "markdown": markdown}


if __name__ == "__main__":
    sys.exit(main())
