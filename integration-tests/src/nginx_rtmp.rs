//! nginx with `libnginx-mod-rtmp` (Debian) as an RTMP server on a loopback port: a child
//! process in the foreground (`daemon off`), with its config and logs in a temp dir, stopped
//! (killed by its PID) when dropped or when a test stops it to see an output fail.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// Panics with a clear message unless nginx and its RTMP module are installed.
pub fn require_nginx_rtmp() {
    assert!(
        Path::new("/usr/sbin/nginx").exists() && Path::new(MODULE).exists(),
        "nginx with the RTMP module is needed: apt install libnginx-mod-rtmp (scripts/install-deps.sh --test)"
    );
}

pub struct NginxRtmp {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl NginxRtmp {
    /// Starts nginx with one live application, `live`, on a free loopback port, and waits until
    /// it accepts connections.
    pub fn start() -> NginxRtmp {
        let dir = tempfile::Builder::new().prefix("nginx-rtmp-").tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let conf = format!(
            "load_module {MODULE};\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let n = NginxRtmp { child: Some(child), port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx-rtmp did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// The URL of a stream of the `live` application.
    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{stream}", self.port)
    }

    /// Stops the server at once (SIGKILL to its PID): the outputs pushing to it lose it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        self.stop();
    }
}
