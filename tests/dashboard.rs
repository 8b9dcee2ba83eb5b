//! The dashboard page in a real browser: a scheduler serving its dashboard, two workers, a
//! computation in flight, and headless Chromium loading the page, which polls
//! `/api/snapshot` and renders it. (The HTTP side alone is tested in `tests/metrics.rs`.)
//!
//! How the page is read: Chromium's own command line, no WebDriver and no new dependency.
//! `--dump-dom` prints the DOM once the page is loaded and the `--virtual-time-budget` has
//! run out. Virtual time only advances while the page is idle and stands still while a
//! request is in flight, so a budget of 2.5 s lets the page's one-second polling run three
//! times, each fetch a real request to the scheduler (measured: about a second of wall
//! time per look). The page exposes what it did in the DOM (`body[data-updates]`,
//! `body[data-errors]`, rows with `data-address`, `data-id`, `data-done`, `data-total`), and
//! `--enable-logging=stderr --v=0` puts its console messages on stderr, where an uncaught
//! error shows as `Uncaught ...`. Two looks a little apart show the progress moving; a
//! third run takes a screenshot, kept as `target/test-artifacts/dashboard.png`.
//!
//! Chromium must be installed (`apt-get install chromium`): it is `/usr/bin/chromium`, or
//! the program named by `ZASK_CHROMIUM`. Without it this test fails, saying so.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    cluster_with_dashboard, http, read_in_background, wait_for_exit, wait_until, DEADLINE,
};
use zask::{key, task, Graph, Keys, Value};

/// How long one run of Chromium may take (it usually takes one to three seconds).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);
/// Virtual time the page runs for in one look: three polls of `/api/snapshot`.
const VIRTUAL_TIME_MS: u32 = 2_500;

// ----- Chromium -----------------------------------------------------------------------------

/// The Chromium binary: `$ZASK_CHROMIUM`, or `/usr/bin/chromium`; fails the test if missing.
fn chromium() -> PathBuf {
    let (path, from) = match std::env::var_os("ZASK_CHROMIUM") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "ZASK_CHROMIUM"),
        _ => (PathBuf::from("/usr/bin/chromium"), "the default path"),
    };
    assert!(
        path.is_file(),
        "Chromium is needed for the dashboard's browser test, and {} ({from}) does not exist: \
         install it (`apt-get install chromium` on Debian), or set ZASK_CHROMIUM to a \
         Chromium or Chrome binary",
        path.display()
    );
    path
}

/// What one run of Chromium printed.
struct BrowserRun {
    stdout: String,
    stderr: String,
}

impl BrowserRun {
    /// The page's console messages (`INFO:CONSOLE` lines of Chromium's log).
    fn console(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .collect()
    }

    /// Fails on an uncaught error or rejection in the page's console.
    fn assert_no_uncaught_errors(&self, what: &str) {
        let uncaught: Vec<&str> = self
            .console()
            .into_iter()
            .filter(|l| l.contains("Uncaught"))
            .collect();
        assert!(
            uncaught.is_empty(),
            "{what}: the page's console shows uncaught errors:\n{}",
            uncaught.join("\n")
        );
    }
}

/// A Chromium process group, killed (the browser and its helper processes) when dropped.
struct BrowserGroup(Child);

impl Drop for BrowserGroup {
    fn drop(&mut self) {
        // The group's id is the browser's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs headless Chromium on `url` with `args` added, in a fresh profile, and waits for it to
/// exit (at most [`BROWSER_TIMEOUT`]).
fn run_chromium(url: &str, args: &[String]) -> BrowserRun {
    let profile = tempfile::tempdir().expect("a directory for Chromium's profile");
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            // Root in a container has no sandbox to give; the page is our own, on 127.0.0.1.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            // No traffic but ours: no QUIC, updates, sync, or field trials from the network.
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--mute-audio",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let described = format!("{command:?}");
    let mut child = BrowserGroup(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {described}: {e}")),
    );
    let out = read_in_background(child.0.stdout.take());
    let err = read_in_background(child.0.stderr.take());
    let status = wait_for_exit(&mut child.0, BROWSER_TIMEOUT).unwrap_or_else(|| {
        panic!("Chromium did not finish within {BROWSER_TIMEOUT:?}: {described}")
    });
    // Helper processes that outlive the browser hold the pipes open: the group goes first.
    drop(child);
    let collect = |rx: mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(10));
    let run = BrowserRun {
        stdout: collect(out).unwrap_or_default(),
        stderr: collect(err).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "Chromium failed ({status}): {described}\nstderr:\n{}",
        run.stderr
    );
    run
}

// ----- the rendered page --------------------------------------------------------------------

/// What one look at the page found in its DOM.
#[derive(Debug)]
struct Look {
    updates: u64,
    errors: u64,
    status: String,
    error_banner: String,
    /// `data-address` of the workers table's rows.
    workers: Vec<String>,
    /// Computation id → (done, total).
    computations: BTreeMap<String, (u64, u64)>,
}

/// Loads the dashboard at `url` for [`VIRTUAL_TIME_MS`] of virtual time and reads its DOM.
fn look(url: &str) -> Look {
    let run = run_chromium(
        url,
        &[
            "--dump-dom".to_string(),
            format!("--virtual-time-budget={VIRTUAL_TIME_MS}"),
        ],
    );
    run.assert_no_uncaught_errors("a look at the dashboard");
    let dom = run.stdout.as_str();
    assert!(
        dom.contains("<tbody id=\"workers\""),
        "Chromium's DOM is not the dashboard's:\n{dom}\nstderr:\n{}",
        run.stderr
    );
    let body = start_tags(dom, "body")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <body> in the DOM:\n{dom}"));
    let number = |name: &str| -> u64 {
        attr(body, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("<body> has no numeric {name}: {body}"))
    };
    let workers = start_tags(section(dom, "<tbody id=\"workers\""), "tr")
        .into_iter()
        .filter_map(|tr| attr(tr, "data-address"))
        .collect();
    let computations = start_tags(section(dom, "<tbody id=\"computations\""), "tr")
        .into_iter()
        .filter_map(|tr| {
            let id = attr(tr, "data-id")?;
            let count = |name: &str| {
                attr(tr, name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("computation row without a numeric {name}: {tr}"))
            };
            Some((id, (count("data-done"), count("data-total"))))
        })
        .collect();
    Look {
        updates: number("data-updates"),
        errors: number("data-errors"),
        status: element_text(dom, "id=\"status\""),
        error_banner: element_text(dom, "id=\"errors\""),
        workers,
        computations,
    }
}

/// The part of `dom` from `start` to the end of that element's table body.
fn section<'a>(dom: &'a str, start: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM:\n{dom}"));
    let rest = &dom[from..];
    &rest[..rest.find("</tbody>").unwrap_or(rest.len())]
}

/// The start tags `<tag ...>` in `html`.
fn start_tags<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if after.starts_with([' ', '>']) {
            let end = after.find('>').map_or(after.len(), |e| e + 1);
            tags.push(&rest[i..i + open.len() + end]);
        }
        rest = after;
    }
    tags
}

/// The value of attribute `name` in start tag `tag` (as Chromium serializes it: double quotes,
/// `&amp;` and `&quot;` escaped).
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(unescape(&tag[from..from + len]))
}

/// The text right inside the element whose start tag holds `marker` (up to its first child).
fn element_text(dom: &str, marker: &str) -> String {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no element with {marker} in the DOM"));
    let rest = &dom[at..];
    let start = rest.find('>').map_or(rest.len(), |i| i + 1);
    let len = rest[start..].find('<').unwrap_or(rest.len() - start);
    unescape(rest[start..start + len].trim())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

// ----- the scheduler's side -----------------------------------------------------------------

/// `n` tasks sleeping `seconds` each and their sum (0 + 1 + ... + n-1).
fn slow_graph(n: i64, seconds: f64) -> Graph {
    let mut g = Graph::new();
    for i in 0..n {
        g.insert(format!("nap-{i}"), task("sleep", (seconds, i)));
    }
    let all: Vec<_> = (0..n).map(|i| key(format!("nap-{i}"))).collect();
    g.insert("naps", task("sum", (zask::list(all),)));
    g
}

/// Where test artifacts go: `$CARGO_TARGET_DIR/test-artifacts`, or the package's
/// `target/test-artifacts`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

#[test]
fn the_page_shows_workers_and_a_computation_progressing_live() {
    let started = Instant::now();
    // Before anything starts: without a browser there is nothing to test.
    chromium();
    let (mut cluster, url) = cluster_with_dashboard(2, 2);
    let addresses: Vec<String> = cluster.workers.iter().map(|w| w.address.clone()).collect();

    // 80 naps of 0.4 s on 2 workers of 2 threads: about 8 s, in flight while the browser looks.
    let n = 80;
    let client = cluster.new_client();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(client.get(&slow_graph(n, 0.4), Keys::from("naps")));
    });
    wait_until(
        "the computation to show in /api/computations",
        DEADLINE,
        || {
            let (status, body) = http(&url, "GET", "/api/computations");
            let list: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status == 200 && list.as_array()?.iter().any(|c| c["total"] == n + 1)).then_some(())
        },
    );
    eprintln!(
        "cluster and computation ready after {:?}",
        started.elapsed()
    );

    let t = Instant::now();
    let first = look(&url);
    eprintln!("first look ({:?}): {first:?}", t.elapsed());

    let t = Instant::now();
    let png = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = run_chromium(
        &url,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".to_string(),
            "--hide-scrollbars".to_string(),
            format!("--virtual-time-budget={VIRTUAL_TIME_MS}"),
        ],
    );
    shot.assert_no_uncaught_errors("the screenshot");
    let image = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}); Chromium's stderr:\n{}",
            png.display(),
            shot.stderr
        )
    });
    assert!(
        image.starts_with(b"\x89PNG\r\n\x1a\n") && image.len() > 10_000,
        "{} is not a PNG of the page ({} bytes)",
        png.display(),
        image.len()
    );
    eprintln!("screenshot ({:?}): {}", t.elapsed(), png.display());

    let t = Instant::now();
    let second = look(&url);
    eprintln!("second look ({:?}): {second:?}", t.elapsed());

    for (which, l) in [("first", &first), ("second", &second)] {
        assert!(
            l.updates >= 2,
            "{which} look: the page rendered {} snapshots in {VIRTUAL_TIME_MS} ms of polling: \
             {l:?}",
            l.updates
        );
        assert_eq!(l.errors, 0, "{which} look: the page counted errors: {l:?}");
        assert!(l.error_banner.is_empty(), "{which} look: {l:?}");
        assert_eq!(l.status, "live", "{which} look: {l:?}");
        for a in &addresses {
            assert!(
                l.workers.contains(a),
                "{which} look: worker {a} is not in the workers table: {l:?}"
            );
        }
        assert_eq!(l.workers.len(), 2, "{which} look: {l:?}");
    }
    // The computation: seen in flight at first, then further along (or finished and gone).
    let (id, &(done, total)) = first
        .computations
        .iter()
        .find(|(_, c)| c.1 == n as u64 + 1)
        .unwrap_or_else(|| panic!("the first look shows no computation of {} tasks", n + 1));
    assert!(id.starts_with("get-"), "{id}");
    assert!(done < total, "the first look came after the end: {first:?}");
    match second.computations.get(id) {
        Some(&(later, _)) => assert!(
            later > done,
            "{id} did not move between the looks ({done} then {later} of {total} done)"
        ),
        None => eprintln!("{id} finished between the looks"),
    }

    let result = done_rx
        .recv_timeout(DEADLINE)
        .expect("the computation finishes")
        .expect("the computation succeeds");
    assert_eq!(result, Value::Int((0..n).sum()));
    for w in &mut cluster.workers {
        assert!(w.proc.is_running(), "{} died", w.proc.name);
    }
    eprintln!("dashboard test done in {:?}", started.elapsed());
}
