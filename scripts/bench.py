#!/usr/bin/env python3
"""Side-by-side load benchmarks: Playfield against its peers, in one run.

Called by scripts/bench.sh (which builds and installs what this needs).
Every run pins the server to core 0 and the bots to core 1 (taskset), waits
for the bots to announce their measuring window on stderr, and samples the
server's CPU (utime + stime from /proc/PID/stat) and RSS (/proc/PID/status)
over exactly that window. Prints one markdown table; writes every bot report
to target/bench/results.json.

Workloads (pick with arguments; default: all):
  w1-json  the seed game, one room, all see all, 20 Hz, seed JSON protocol:
           Playfield and the seed's Python server, same Playfield bots.
  w1-bin   the same game on binary deltas: Playfield (playfield.v1.bin) and
           Colyseus 0.18 (its schema deltas), each with its own SDK's bots.
  w2       a large world (10,000 px, 500 px views), Playfield binary, the
           cost curve from 2,500 to 10,000 players.
  free     W2 with nothing pinned: what the whole machine holds.

Sizes, durations and where the peers live come from the environment:
  SECS (10), WARMUP (3), W1_JSON ("800"), W1_BIN ("1000 1500"),
  W2 ("2500 5000 10000"), FREE ("10000"), DECODE (100: clients that fully
  decode, same for both bots), SEED_SERVER, COLYSEUS_DIR.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYFIELD = os.path.join(ROOT, "target/release/playfield")
SEED_SERVER = os.environ.get("SEED_SERVER", os.path.join(ROOT, "../shared/seed/server_fixed.py"))
COLYSEUS = os.environ.get("COLYSEUS_DIR", os.path.join(ROOT, "target/colyseus-peer"))
SECS = float(os.environ.get("SECS", "10"))
WARMUP = float(os.environ.get("WARMUP", "3"))
DECODE = int(os.environ.get("DECODE", "100"))
TCK = os.sysconf("SC_CLK_TCK")
RESULTS = []


def sizes(var, default):
    return [int(s) for s in os.environ.get(var, default).split()]


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process, its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return int(fields[11]) / TCK, int(fields[12]) / TCK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_port(port, proc, timeout=20):
    import socket

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def pin(core):
    return ["taskset", "-c", str(core)] if core is not None else []


def run(name, workload, players, server_cmd, port, bots_cmd, env=None, pinned=True, rooms_url=None):
    """One server + one bot process; returns the bots' JSON report plus server CPU/RSS."""
    server = subprocess.Popen(
        pin(0 if pinned else None) + server_cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    report = {"server": name, "workload": workload, "players": players}
    try:
        wait_port(port, server)
        bots = subprocess.Popen(
            pin(1 if pinned else None) + bots_cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        c0 = t0 = c1 = t1 = rss = None
        ticks = None
        deadline = time.time() + SECS + WARMUP + players / 100 + 120
        def sample_rooms():
            # While the bots play: once they stop, the room closes with them.
            try:
                with urllib.request.urlopen(rooms_url, timeout=5) as r:
                    rooms = json.load(r)["rooms"]
                    return rooms[0] if rooms else None
            except Exception:  # a missed sample is not fatal
                return None

        room = None
        for line in bots.stderr:
            if "WINDOW_START" in line:
                c0, t0 = cpu_seconds(server.pid), time.time()
            elif "WINDOW_END" in line:
                c1, t1 = cpu_seconds(server.pid), time.time()
                rss = rss_mib(server.pid)
                break
            elif c0 is not None and rooms_url and line.startswith("bots: "):
                room = sample_rooms() or room
            if time.time() > deadline:
                break
        if room:
            ticks = room.get("tick")
            report["fanout"] = room.get("fanout")
            report["send_gap"] = room.get("send_gap")
        out, _ = bots.communicate(timeout=120)
        lines = [l for l in out.strip().splitlines() if l.startswith("{")]
        if lines:
            report.update(json.loads(lines[-1]))
        if c0 is not None and c1 is not None and t1 > t0:
            user, system = (100 * (b - a) / (t1 - t0) for a, b in zip(c0, c1))
            report["server_cpu_pct"] = user + system
            report["server_user_pct"] = user
            report["server_sys_pct"] = system
        report["server_rss_mib"] = rss
        if ticks is not None:
            report["tick"] = ticks
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    RESULTS.append(report)
    row(report)
    return report


def playfield_server(port, *extra):
    return [PLAYFIELD, "--host", "127.0.0.1", "--port", str(port), "--room-capacity", "100000",
            "--max-connections", "100000", "--max-rooms", "16", *extra]


def playfield_bots(port, n, protocol, decode=None):
    cmd = [PLAYFIELD, "bots", "--url", f"ws://127.0.0.1:{port}/", "--clients", str(n),
           "--duration", str(SECS), "--warmup", str(WARMUP), "--protocol", protocol,
           "--connect-rate", "1000"]
    if decode is not None:
        cmd += ["--decode-clients", str(min(decode, n))]
    return cmd


HEADER = ("| workload | server | players | connected | updates/s | gap p50 | gap p99 | latency p50 | latency p99 "
          "| bytes/update | server CPU % (user+sys) | CPU per 1k updates/s | RSS MiB | KB/player | tick p99 ms "
          "| fan-out p50/p99 ms | server send gap p99/max ms |")


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def row(r):
    ups = r.get("updates_per_client_per_s")
    cpu = r.get("server_cpu_pct")
    conn = r.get("clients_connected") or 0
    per_k = None
    if cpu is not None and ups and conn:
        # Server CPU (% of a core) per 1,000 delivered updates per second.
        per_k = cpu / (ups * conn / 1000)
    rss = r.get("server_rss_mib")
    kb = rss * 1024 / conn if rss and conn else None
    tick = r.get("tick") or {}
    fan = r.get("fanout") or {}
    sg = r.get("send_gap") or {}
    bytes_update = r.get("bytes_per_update", r.get("avg_update_bytes"))
    print("| " + " | ".join([
        r["workload"], r["server"], str(r["players"]), str(conn), fmt(ups, 2),
        fmt(r.get("gap_ms_p50")), fmt(r.get("gap_ms_p99")), fmt(r.get("latency_ms_p50")),
        fmt(r.get("latency_ms_p99")), fmt(bytes_update, 0),
        f"{fmt(cpu)} ({fmt(r.get('server_user_pct'))}+{fmt(r.get('server_sys_pct'))})" if cpu is not None else "–",
        fmt(per_k, 2), fmt(rss),
        fmt(kb, 1), fmt(tick.get("p99_ms"), 2) if isinstance(tick, dict) else "–",
        f"{fmt(fan.get('p50_ms'))}/{fmt(fan.get('p99_ms'))}" if fan else "–",
        f"{fmt(sg.get('p99_ms'))}/{fmt(sg.get('max_ms'))}" if sg else "–",
    ]) + " |", flush=True)


def w1_json():
    for n in sizes("W1_JSON", "800"):
        run("playfield", "W1 seed JSON", n, playfield_server(9871), 9871,
            playfield_bots(9871, n, "seed", DECODE), rooms_url="http://127.0.0.1:9871/rooms")
        if os.path.exists(SEED_SERVER):
            run("seed (Python)", "W1 seed JSON", n, ["python3", SEED_SERVER], 9872,
                playfield_bots(9872, n, "seed", DECODE), env={"PORT": "9872"})
        else:
            print(f"(seed server not found at {SEED_SERVER}: skipped)", file=sys.stderr)


def w1_bin():
    have_colyseus = os.path.exists(os.path.join(COLYSEUS, "node_modules"))
    if not have_colyseus:
        print(f"(Colyseus peer not installed in {COLYSEUS}: skipped)", file=sys.stderr)
    for n in sizes("W1_BIN", "1000 1500"):
        run("playfield", "W1 binary", n, playfield_server(9873), 9873,
            playfield_bots(9873, n, "bin", DECODE), rooms_url="http://127.0.0.1:9873/rooms")
        if have_colyseus:
            run("colyseus 0.18", "W1 binary", n, ["node", os.path.join(COLYSEUS, "server.js")], 9874,
                ["node", os.path.join(COLYSEUS, "bots.js"), "--url", "ws://127.0.0.1:9874",
                 "--clients", str(n), "--duration", str(SECS), "--warmup", str(WARMUP),
                 "--connect-rate", "1000", "--decode-clients", str(min(DECODE, n))],
                env={"PORT": "9874", "SERVER_TICK_STATS": "0"})


def w2(pinned=True, var="W2", default="2500 5000 10000", label="W2 10k world"):
    for n in sizes(var, default):
        run("playfield", label, n,
            playfield_server(9875, "--world-size", "10000", "--view-size", "500"), 9875,
            playfield_bots(9875, n, "bin", DECODE), pinned=pinned,
            rooms_url="http://127.0.0.1:9875/rooms")


def main():
    which = sys.argv[1:] or ["w1-json", "w1-bin", "w2"]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} · {os.uname().nodename} · {os.cpu_count()} cores · "
          f"window {SECS:g} s after {WARMUP:g} s warm-up · {DECODE} decoding clients", flush=True)
    print(HEADER)
    print("|" + "|".join(["---"] * (HEADER.count("|") - 1)) + "|")
    for w in which:
        {"w1-json": w1_json, "w1-bin": w1_bin, "w2": w2,
         "free": lambda: w2(False, "FREE", "10000", "W2 unpinned")}[w]()
    os.makedirs(os.path.join(ROOT, "target/bench"), exist_ok=True)
    with open(os.path.join(ROOT, "target/bench/results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)


if __name__ == "__main__":
    main()
