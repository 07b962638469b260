//! What a plain `GET` on the SPICE port gets: our page (`/`), its script, and
//! spice-html5's files (`/spice-html5/...`) from where Debian installs them. Only
//! files directly named by a clean relative path are served, never a listing.

use std::path::{Path, PathBuf};

use super::http::{self, Request};

pub const DEFAULT_SPICE_HTML5: &str = "/usr/share/spice-html5";
const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/spicebox.js");
/// spice-html5's largest file is 50 KiB; anything far bigger is not what we serve.
const MAX_FILE: u64 = 1 << 20;
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
                   style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// (status, response bytes, what to log).
pub struct Served {
    pub status: u16,
    pub bytes: Vec<u8>,
}

fn ok(content_type: &str, body: &[u8]) -> Served {
    Served {
        status: 200,
        bytes: http::response(
            200,
            &[
                ("Content-Type", content_type),
                ("Content-Security-Policy", CSP),
                ("Referrer-Policy", "no-referrer"),
            ],
            body,
        ),
    }
}

fn error(status: u16, text: &str) -> Served {
    Served {
        status,
        bytes: http::error(status, text),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A relative path of plain names (letters, digits, `.`, `_`, `-`; none starting
/// with a dot), so nothing can leave the directory or reach hidden files.
fn clean_relative(rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in rel.split('/') {
        let ok = !part.is_empty()
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

/// Answers a GET that is not a WebSocket upgrade. `spice_html5` is the directory of
/// Debian's spice-html5 (None: the page is turned off).
pub async fn serve(req: &Request, spice_html5: Option<&Path>) -> Served {
    let Some(dir) = spice_html5 else {
        return error(404, "the browser client is turned off on this server");
    };
    match req.path.as_str() {
        "/" | "/index.html" => {
            if !dir.join("main.js").is_file() {
                return error(
                    503,
                    &format!(
                        "spice-html5 is not installed in {} (Debian: apt-get install spice-html5)",
                        dir.display()
                    ),
                );
            }
            ok("text/html; charset=utf-8", INDEX.as_bytes())
        }
        "/spicebox.js" => ok("text/javascript; charset=utf-8", SCRIPT.as_bytes()),
        // Browsers ask for it; an empty answer keeps their consoles quiet.
        "/favicon.ico" => Served {
            status: 204,
            bytes: http::response(204, &[], b""),
        },
        p => {
            let Some(rel) = p.strip_prefix("/spice-html5/").and_then(clean_relative) else {
                return error(404, "not found");
            };
            let file = dir.join(rel);
            match tokio::fs::metadata(&file).await {
                Ok(m) if m.is_file() && m.len() <= MAX_FILE => {}
                _ => return error(404, "not found"),
            }
            match tokio::fs::read(&file).await {
                Ok(body) => ok(content_type(&file), &body),
                Err(_) => error(404, "not found"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: vec![],
        }
    }

    #[test]
    fn only_clean_relative_paths() {
        assert_eq!(clean_relative("main.js"), Some(PathBuf::from("main.js")));
        assert!(clean_relative("thirdparty/rsa.js").is_some());
        for bad in [
            "../etc/passwd",
            "a/../b",
            "",
            "a//b",
            ".hidden",
            "a/.git/x",
            "a b",
            "a%2e",
        ] {
            assert_eq!(clean_relative(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn serves_page_script_and_files_only() {
        let dir = std::env::temp_dir().join(format!("spicebox-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("main.js"), "export {}").unwrap();
        std::fs::write(dir.join("sub/x.css"), "b{}").unwrap();
        let text = |s: Served| (s.status, String::from_utf8(s.bytes).unwrap());
        let (st, page) = text(serve(&get("/"), Some(&dir)).await);
        assert_eq!(st, 200);
        assert!(page.contains("spicebox.js") && page.contains("Content-Security-Policy"));
        let (st, js) = text(serve(&get("/spice-html5/main.js"), Some(&dir)).await);
        assert_eq!(st, 200);
        assert!(js.contains("text/javascript") && js.ends_with("export {}"));
        let (st, css) = text(serve(&get("/spice-html5/sub/x.css"), Some(&dir)).await);
        assert!(st == 200 && css.contains("text/css"));
        for p in [
            "/spice-html5/../Cargo.toml",
            "/spice-html5/",
            "/spice-html5/sub",
            "/etc/passwd",
        ] {
            assert_eq!(serve(&get(p), Some(&dir)).await.status, 404, "{p}");
        }
        assert_eq!(serve(&get("/favicon.ico"), Some(&dir)).await.status, 204);
        assert_eq!(serve(&get("/"), None).await.status, 404);
        std::fs::remove_file(dir.join("main.js")).unwrap();
        assert_eq!(serve(&get("/"), Some(&dir)).await.status, 503);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
