//! A static file server for the built app: GET and HEAD with byte ranges (so model
//! downloads resume), the right MIME types (browsers compile wasm only when it is
//! served as `application/wasm`), the headers that make the page cross-origin isolated,
//! loopback only.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

/// Serves `root` on `127.0.0.1:port` until the process ends.
pub fn serve(root: &Path, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    println!("Charter is served at http://127.0.0.1:{port}/ (Ctrl-C stops)");
    for stream in listener.incoming().flatten() {
        let root = root.to_owned();
        std::thread::spawn(move || {
            let _ = handle(&root, stream);
        });
    }
    Ok(())
}

/// Cross-origin isolation (shared memory for threads), as web/README.md asks of a host.
const ISOLATION: &str = "cross-origin-opener-policy: same-origin\r\ncross-origin-embedder-policy: require-corp\r\n";

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let mut out = root.to_owned();
    for part in Path::new(path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    out.is_file().then_some(out)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes.
pub fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len.checked_sub(1)?)),
    };
    (start <= end && end < len).then_some((start, end))
}

fn handle(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mut range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("range") {
                    range = Some(value.trim().to_owned());
                }
            }
        }
        if method != "GET" && method != "HEAD" {
            write!(out, "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        }
        let Some(path) = resolve(root, target) else {
            let body = b"not found";
            write!(out, "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n", body.len())?;
            out.write_all(body)?;
            continue;
        };
        let mut file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        let (status, start, end) = match range.as_deref().map(|r| parse_range(r, len)) {
            None => ("200 OK", 0, len.saturating_sub(1)),
            Some(Some((s, e))) => ("206 Partial Content", s, e),
            Some(None) => {
                write!(out, "HTTP/1.1 416 Range Not Satisfiable\r\ncontent-range: bytes */{len}\r\ncontent-length: 0\r\n\r\n")?;
                continue;
            }
        };
        let n = if len == 0 { 0 } else { end - start + 1 };
        write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-type: {}\r\ncontent-length: {n}\r\naccept-ranges: bytes\r\ncache-control: no-cache\r\n{ISOLATION}",
            content_type(&path)
        )?;
        if status.starts_with("206") {
            write!(out, "content-range: bytes {start}-{end}/{len}\r\n")?;
        }
        write!(out, "\r\n")?;
        if method == "GET" && n > 0 {
            file.seek(SeekFrom::Start(start))?;
            std::io::copy(&mut (&mut file).take(n), &mut out)?;
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_and_clamp() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=9-3", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
