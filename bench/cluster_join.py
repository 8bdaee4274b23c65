#!/usr/bin/env python3
"""The cluster's proxy cost (docs/cluster.md, docs/benchmarks.md#cluster): a join through the
room's owner against one through another node, on loopback.

Starts a redis-server and two daemons (node a on 127.0.0.2, node b on 127.0.0.3), makes room
`bench` on a, then alternates N joins through a and N through b (each a plain PCMU offer, left at
once), and prints the latency percentiles of each and their difference.

    python3 bench/cluster_join.py [--bin target/release/switchboard] [--joins 300]
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

def node(bin_, tmp, redis_url, nid, host, rtp_base):
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
port_max = {rtp_base + 1999}
[rooms]
max_participants = 1000
[auth]
enabled = false
[log]
filter = "warn"
[cluster]
redis_url = "{redis_url}"
node_id = "{nid}"
"""
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

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/switchboard")
    ap.add_argument("--joins", type=int, default=300)
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
        pa, a_url = node(a.bin, tmp, url, "a", "127.0.0.2", 34000)
        pb, b_url = node(a.bin, tmp, url, "b", "127.0.0.3", 36000)
        procs += [pa, pb]
        time.sleep(1.0)
        st, v, _ = call("POST", a_url + "/v1/rooms", {"id": "bench"})
        assert st == 201 and v.get("node") == "a", (st, v)
        lat = {"owner (a)": [], "other node (b)": []}
        for i in range(a.joins * 2):
            name, base = (("owner (a)", a_url), ("other node (b)", b_url))[i % 2]
            st, v, dt = call("POST", base + "/v1/rooms/bench/participants", {"sdp": offer(50000 + (i % 1000) * 2)})
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
