#!/usr/bin/env python3
"""The cluster's costs (docs/cluster.md, docs/benchmarks.md#cluster): a join through the
room's owner against one through another node, on loopback.

Starts a redis-server and two daemons (node a on 127.0.0.2, node b on 127.0.0.3), makes room
`bench` on a, then alternates N joins through a and N through b (each a plain PCMU offer, left at
once), and prints the latency percentiles of each and their difference.

With --trunk SECONDS it also measures what a trunk costs: two plain PCMU legs sending to each
other (20 ms PCMU packets) in a room on node b alone, then in a room owned by node a
(capacity 1) whose second leg is cascaded to a part on node b; the CPU each daemon used over the
window (/proc/PID/stat), per relayed packet.

    python3 bench/cluster_join.py [--bin target/release/switchboard] [--joins 300] [--trunk 20]
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p

def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        out, status = e.read(), e.code
    dt = time.perf_counter() - t
    try:
        return status, json.loads(out), dt
    except ValueError:
        return status, out, dt

def offer(port):
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")

def node(bin_, tmp, redis_url, nid, host, rtp_base, capacity=None):
    http = free_port(host)
    cfg = f"""
[http]
listen = "{host}:{http}"
[webrtc]
listen = "127.0.0.1:0"
[rtp]
bind_ip = "127.0.0.1"
advertised_ip = "127.0.0.1"
port_min = {rtp_base}
port_max = {rtp_base + 5999}
[rooms]
max_participants = 1000
[auth]
enabled = false
[log]
filter = "warn"
[cluster]
redis_url = "{redis_url}"
node_id = "{nid}"
heartbeat_ms = 500
"""
    if capacity is not None:
        cfg += f"capacity = {capacity}\n"
    path = os.path.join(tmp, f"{nid}.toml")
    with open(path, "w") as f:
        f.write(cfg)
    p = subprocess.Popen([bin_, "--config", path], stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{nid}.log"), "w"))
    base = f"http://{host}:{http}"
    for _ in range(200):
        try:
            if call("GET", base + "/healthz")[0] == 200:
                return p, base
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"node {nid} did not start; see {tmp}/{nid}.log")

def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")

def leg_pair(seconds, joins):
    """Two UDP legs: `joins(offer_a, offer_b)` joins them and returns the bridge's two answers'
    ports; then each sends a 20 ms PCMU packet every 20 ms to its port for `seconds`. Returns the
    packets the two received."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    ports = joins(*(offer(s.getsockname()[1]) for s in socks))
    got, seq, t0 = [0, 0], 0, time.perf_counter()
    payload = bytes([0xFF]) * 160
    while time.perf_counter() - t0 < seconds:
        seq = (seq + 1) & 0xFFFF
        for i, s in enumerate(socks):
            hdr = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160 & 0xFFFFFFFF).to_bytes(4, "big") + (0x1000 + i).to_bytes(4, "big")
            s.sendto(hdr + payload, ("127.0.0.1", ports[i]))
        for i, s in enumerate(socks):
            while True:
                try:
                    s.recv(2048)
                    got[i] += 1
                except BlockingIOError:
                    break
        time.sleep(max(0.0, t0 + seq * 0.02 - time.perf_counter()))
    return sum(got)

def answer_port(sdp):
    for l in sdp.split("\r\n"):
        if l.startswith("m=audio "):
            return int(l.split()[1])
    raise ValueError("no m=audio in the answer")

def trunk_bench(seconds, a_url, b_url, pa, pb):
    def join(base, room, sdp):
        st, v, _ = call("POST", f"{base}/v1/rooms/{room}/participants", {"sdp": sdp})
        assert st == 201, (st, v)
        return answer_port(v["sdp"])

    def window(room, first, second):
        def joins(oa, ob):
            p1 = join(first, room, oa)
            time.sleep(1.5)  # the owner's record shows the first leg before the second joins
            return [p1, join(second, room, ob)]
        c0 = (cpu_secs(pa.pid), cpu_secs(pb.pid))
        n = leg_pair(seconds, joins)
        c1 = (cpu_secs(pa.pid), cpu_secs(pb.pid))
        call("DELETE", f"{a_url}/v1/rooms/{room}")
        return n, c1[0] - c0[0], c1[1] - c0[1]

    st, v, _ = call("POST", b_url + "/v1/rooms", {"id": "solo"})
    assert st == 201 and v.get("node") == "b", (st, v)
    n, ca, cb = window("solo", b_url, b_url)
    print(f"trunk: {seconds} s of two PCMU legs, 50 packets/s each; CPU µs per relayed packet")
    print(f"  one node (b)            relayed {n}  a {ca / max(n, 1) * 1e6:.1f}  b {cb / max(n, 1) * 1e6:.1f}")
    st, v, _ = call("POST", a_url + "/v1/rooms", {"id": "casc"})
    assert st == 201 and v.get("node") == "a", (st, v)
    n2, ca2, cb2 = window("casc", a_url, a_url)
    print(f"  cascaded (a owns, b part) relayed {n2}  a {ca2 / max(n2, 1) * 1e6:.1f}  b {cb2 / max(n2, 1) * 1e6:.1f}")
    print(f"  CPU seconds: one node a {ca:.2f} b {cb:.2f}; cascaded a {ca2:.2f} b {cb2:.2f}")
    st, v, _ = call("GET", a_url + "/v1/nodes")
    print(f"  (both windows include each node's heartbeats and idle work; the first row's a is that alone)")

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/switchboard")
    ap.add_argument("--joins", type=int, default=300)
    ap.add_argument("--trunk", type=float, default=0, metavar="SECONDS")
    a = ap.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    tmp = tempfile.mkdtemp(prefix="sb-cluster-bench-")
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [redis]
    try:
        time.sleep(0.3)
        url = f"redis://127.0.0.1:{rport}/"
        pa, a_url = node(a.bin, tmp, url, "a", "127.0.0.2", 20000, capacity=1 if a.trunk else None)
        pb, b_url = node(a.bin, tmp, url, "b", "127.0.0.3", 26000)
        procs += [pa, pb]
        time.sleep(1.0)
        if a.trunk:
            trunk_bench(a.trunk, a_url, b_url, pa, pb)
            return
        st, v, _ = call("POST", a_url + "/v1/rooms", {"id": "bench"})
        assert st == 201 and v.get("node") == "a", (st, v)
        lat = {"owner (a)": [], "other node (b)": []}
        for i in range(a.joins * 2):
            name, base = (("owner (a)", a_url), ("other node (b)", b_url))[i % 2]
            st, v, dt = call("POST", base + "/v1/rooms/bench/participants", {"sdp": offer(10000 + (i % 1000) * 2)})
            assert st == 201, (st, v)
            lat[name].append(dt * 1000)
            call("DELETE", f"{base}/v1/rooms/bench/participants/{v['id']}")
        print(f"joins: {a.joins} through each node, alternating; latency in ms")
        for name, xs in lat.items():
            print(f"  {name:16s} p50 {pct(xs, 50):.2f}  p90 {pct(xs, 90):.2f}  p99 {pct(xs, 99):.2f}  mean {statistics.mean(xs):.2f}")
        o, n = lat["owner (a)"], lat["other node (b)"]
        print(f"  difference       p50 {pct(n, 50) - pct(o, 50):+.2f}  p99 {pct(n, 99) - pct(o, 99):+.2f}")
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
