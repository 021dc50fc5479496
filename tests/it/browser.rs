//! `GET /dashboard`: the page on its own (self-contained, documented), and the page in a real
//! headless Chromium against the real `chatstats` binary with its embedded simulator.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cdp::{CHROMIUM, Cdp, Chromium, Page};
use crate::helpers::{Running, TestApi, bin, eventually, free_port, get_json, memory_store};

/// How long the page may take to show something (a debug build on a busy 2-core machine).
const PAGE_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_dashboard_is_one_self_contained_documented_page() {
    let api = TestApi::spawn(memory_store()).await;
    let response = api
        .client
        .get(api.url("/dashboard"))
        .send()
        .await
        .expect("GET /dashboard");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("cache-control"), "no-cache");
    let policy = header("content-security-policy");
    assert!(
        policy.contains("default-src 'self'") && policy.contains("connect-src 'self'"),
        "the page's policy must keep it to this origin: {policy}"
    );
    let page = response.text().await.expect("the page");
    for id in [
        "id=\"rate\"",
        "id=\"chart\"",
        "id=\"list-nicks\"",
        "id=\"feed\"",
        "id=\"summary\"",
    ] {
        assert!(page.contains(id), "the page has no {id}");
    }
    // No CDN, no outside host: no absolute or protocol-relative URL anywhere in the page.
    for outside in [
        "http://",
        "https://",
        "src=\"//",
        "href=\"//",
        "url(//",
        "@import",
    ] {
        assert!(!page.contains(outside), "the page refers to {outside}…");
    }
    let (status, doc) = api.get("/documentation/json").await;
    assert_eq!(status, 200);
    let dashboard = &doc["paths"]["/dashboard"]["get"];
    assert!(
        dashboard["responses"]["200"]["content"]["text/html"].is_object(),
        "/dashboard is not in the OpenAPI document as an HTML page: {dashboard}"
    );
}

/// True when Chromium is there; without it a developer's run skips, CI fails.
fn chromium_installed() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{CHROMIUM} is missing: the dashboard's browser test needs Debian's chromium \
         (apt-get install chromium; .ci/run installs it)"
    );
    eprintln!("skipped: chromium not installed ({CHROMIUM}); apt-get install chromium to run it");
    false
}

/// The real `chatstats` (simulator + in-memory store) on a free port, once it counts words.
async fn chatstats() -> (Running, String) {
    let port = free_port();
    let app = Running(
        bin("chatstats")
            .env("NODE_HOST", "127.0.0.1")
            .env("NODE_PORT", port.to_string())
            .spawn()
            .expect("start chatstats"),
    );
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "words counted", || async {
        get_json(&format!("{base}/stats/words"))
            .await
            .is_some_and(|w| w.as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    (app, base)
}

/// `url` in a fresh headless Chromium, its console, log and network watched ([`problems`]).
async fn open_page(url: &str) -> (Chromium, Page) {
    let chromium = Chromium::launch(1400, 1000);
    let cdp = Cdp::connect(chromium.endpoint()).await;
    let page = cdp.new_page().await;
    page.enable(&["Runtime", "Log", "Page", "Network"]).await;
    page.navigate(url).await;
    (chromium, page)
}

/// What went wrong in the page so far: console errors, uncaught exceptions, error log entries,
/// failed requests and error answers. An `EventSource` the page closes itself (to follow
/// another room) is cancelled by design and is not a failure.
fn problems(page: &Page) -> Vec<String> {
    let events = page.events();
    let url_of = |request: &Value| {
        events
            .iter()
            .find(|e| {
                e["method"] == "Network.requestWillBeSent" && e["params"]["requestId"] == *request
            })
            .map(|e| e["params"]["request"]["url"].to_string())
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for event in &events {
        let p = &event["params"];
        match event["method"].as_str().unwrap_or_default() {
            "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                found.push(format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or_default(),
                    p["args"]
                ));
            }
            "Runtime.exceptionThrown" => {
                found.push(format!("exception: {}", p["exceptionDetails"]))
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                found.push(format!(
                    "log: {} ({})",
                    p["entry"]["text"], p["entry"]["url"]
                ));
            }
            "Network.loadingFailed" if !(p["canceled"] == true && p["type"] == "EventSource") => {
                found.push(format!(
                    "request failed: {} {}",
                    url_of(&p["requestId"]),
                    p["errorText"]
                ));
            }
            "Network.responseReceived" if p["response"]["status"].as_u64() >= Some(400) => {
                found.push(format!(
                    "{} answered {}",
                    p["response"]["url"], p["response"]["status"]
                ));
            }
            _ => {}
        }
    }
    found
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).expect("target directory");
    dir.join(name)
}

/// Polls `expression` in the page until it is truthy; on timeout, fails with what was awaited
/// and the page's errors so far (a broken script shows there, not as a missing element).
async fn wait(page: &Page, what: &str, expression: &str) -> Value {
    page.wait_for(expression, PAGE_LIMIT)
        .await
        .unwrap_or_else(|last| {
            panic!(
                "timed out after {PAGE_LIMIT:?} waiting for: {what}\n`{expression}` was {last}\nthe page's errors so far: {:#?}",
                problems(page)
            )
        })
}

/// A JavaScript string literal of `text`.
fn js(text: &str) -> String {
    json!(text).to_string()
}

/// The page's visible numbers: every top-list count and the newest feed message.
const NUMBERS: &str = "JSON.stringify({
    lists: [...document.querySelectorAll('ol.top li[data-count]')]
        .map(li => li.dataset.member + '=' + li.dataset.count),
    newest: document.querySelector('#feed li[data-id]')?.dataset.id ?? ''})";

/// Everything the page shows once it has read the API and the live feed.
const FILLED: &str = "['words', 'nicks', 'rooms', 'emotes']
        .every(k => document.querySelectorAll(`#list-${k} li[data-count]`).length > 0)
    && document.querySelector('#chart path.line') !== null
    && document.querySelector('#rate').dataset.value !== ''
    && document.querySelectorAll('#feed li[data-id]').length >= 20";

/// The open summary's number in tile `field` (thousands separators dropped), else 0.
const SUMMARY_NUMBER: &str = "((name, field) => {
    const d = document.querySelector('#summary');
    if (!d.open || d.dataset.state !== 'ready' || d.dataset.name !== name) return 0;
    const tile = d.querySelector(`[data-field=${field}] strong`);
    return tile ? Number(tile.textContent.replace(/\\D/g, '')) : 0;
})";

#[tokio::test]
async fn the_dashboard_in_a_real_browser_shows_live_numbers_and_summaries() {
    if !chromium_installed() {
        return;
    }
    let (_app, base) = chatstats().await;
    let (_chromium, page) = open_page(&format!("{base}/dashboard")).await;

    wait(
        &page,
        "the four lists, the chart, the rate and the feed",
        FILLED,
    )
    .await;
    let before = page.eval(NUMBERS).await;
    let before = js(before.as_str().expect("the numbers"));
    let moved = format!(
        "(() => {{ const now = JSON.parse({NUMBERS}), then = JSON.parse({before});
            return JSON.stringify(now.lists) !== JSON.stringify(then.lists)
                && now.newest !== then.newest; }})()"
    );
    wait(&page, "the counts and the feed to move", &moved).await;
    page.screenshot(&screenshot_path("dashboard.png"), true)
        .await;

    a_click_on_a_nick_opens_its_summary(&page, &base).await;
    a_click_on_a_room_in_the_feed_opens_its_summary(&page).await;
    the_room_filter_narrows_the_lists_and_the_feed(&page).await;
    on_a_phone_nothing_overflows(&page).await;

    let found = problems(&page);
    assert!(
        found.is_empty(),
        "the page had errors:\n{}",
        found.join("\n")
    );
    // The watcher itself works: a console error in the page is seen (and would fail above).
    page.eval("console.error('dashboard-test-probe')").await;
    eventually(PAGE_LIMIT, "the probe console error to be seen", || async {
        problems(&page)
            .iter()
            .any(|p| p.contains("dashboard-test-probe"))
    })
    .await;
}

#[tokio::test]
async fn the_swagger_ui_at_documentation_lists_every_route_in_a_real_browser() {
    if !chromium_installed() {
        return;
    }
    let (_app, base) = chatstats().await;
    // `/documentation` as the contract names it, without a trailing slash.
    let (_chromium, page) = open_page(&format!("{base}/documentation")).await;
    let doc = get_json(&format!("{base}/documentation/json"))
        .await
        .expect("the OpenAPI document");
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    let shown = format!("document.querySelectorAll('.opblock').length >= {operations}");
    wait(&page, "every operation of the OpenAPI document", &shown).await;
    page.screenshot(&screenshot_path("documentation.png"), false)
        .await;
    let found = problems(&page);
    assert!(
        found.is_empty(),
        "the page had errors:\n{}",
        found.join("\n")
    );
}

/// Clicks the first element matching `selector` (a nick or a room) and returns its name.
async fn click(page: &Page, selector: &str) -> String {
    let script = format!(
        "(() => {{ const b = document.querySelector({}); b.click(); return b.dataset.name; }})()",
        js(selector)
    );
    let name = page.eval(&script).await;
    name.as_str()
        .unwrap_or_else(|| panic!("nothing to click at {selector}"))
        .to_owned()
}

/// Waits for the summary of `name` and returns its number in tile `field`.
async fn summary_number(page: &Page, name: &str, field: &str) -> u64 {
    let script = format!("{SUMMARY_NUMBER}({}, {})", js(name), js(field));
    let what = format!("the summary of {name} with its {field}");
    wait(page, &what, &script).await.as_u64().expect("a count")
}

/// Clicks the top nick; the summary shows its messages, as many as the API says (or fewer,
/// the API's having moved on since), its lists and its latest messages.
async fn a_click_on_a_nick_opens_its_summary(page: &Page, base: &str) {
    let nick = click(page, "#list-nicks button[data-open=nick]").await;
    let shown = summary_number(page, &nick, "messages").await;
    let path = format!("{base}/stats/nicks/{}", nick.replace('#', "%23"));
    let api = get_json(&path).await.expect("the nick's summary");
    assert!(
        shown <= api["messages"].as_u64().expect("messages"),
        "the summary shows {shown} messages for {nick}, the API {api}"
    );
    let lists = "document.querySelectorAll('#summary-lists li[data-count]').length > 0
        && document.querySelectorAll('#summary-messages li[data-id]').length > 0";
    wait(page, "the nick's rooms and latest messages", lists).await;
    page.screenshot(&screenshot_path("dashboard-summary.png"), false)
        .await;
    close_summary(page).await;
}

async fn close_summary(page: &Page) {
    page.eval("document.querySelector('#summary-close').click()")
        .await;
    let closed = "!document.querySelector('#summary').open";
    wait(page, "the summary to close", closed).await;
}

/// Clicks a room in the live feed; the room's summary shows its messages and chatters.
async fn a_click_on_a_room_in_the_feed_opens_its_summary(page: &Page) {
    let room = click(page, "#feed button[data-open=room]").await;
    summary_number(page, &room, "messages").await;
    summary_number(page, &room, "uniqueChatters").await;
    close_summary(page).await;
}

/// Filters on the busiest room through its summary's button: the feed shows only that room,
/// the rooms list highlights it; back to all rooms through the select.
async fn the_room_filter_narrows_the_lists_and_the_feed(page: &Page) {
    let room = click(page, "#list-rooms button[data-open=room]").await;
    summary_number(page, &room, "messages").await;
    page.eval("document.querySelector('#summary-filter').click()")
        .await;
    let filtered = format!(
        "(room => {{ const rows = [...document.querySelectorAll('#feed li[data-id]')];
            return !document.querySelector('#summary').open
                && document.querySelector('#room').value === room
                && document.querySelector('#list-rooms li.selected')?.dataset.member === room
                && rows.length >= 3 && rows.every(li => li.dataset.room === room); }})({})",
        js(&room)
    );
    let what = "only the room in the feed, highlighted in the rooms list, chosen in the select";
    wait(page, what, &filtered).await;
    let all_rooms = "(() => { const s = document.querySelector('#room');
        s.value = ''; s.dispatchEvent(new Event('change')); })()";
    page.eval(all_rooms).await;
    let unfiltered = "document.querySelector('#list-rooms li.selected') === null
        && new Set([...document.querySelectorAll('#feed li[data-id]')]
            .map(li => li.dataset.room)).size >= 3";
    wait(page, "messages of several rooms again", unfiltered).await;
}

/// A phone-sized viewport (dark scheme): the page fits its width; screenshots.
async fn on_a_phone_nothing_overflows(page: &Page) {
    let phone = json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true});
    page.call("Emulation.setDeviceMetricsOverride", phone).await;
    let dark = json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]});
    page.call("Emulation.setEmulatedMedia", dark).await;
    let fits = "window.innerWidth === 390 && document.documentElement.scrollWidth <= 390
        && document.querySelector('#chart').viewBox.baseVal.width <= 390
        && document.querySelectorAll('#feed li[data-id]').length >= 10";
    wait(
        page,
        "the page laid out at 390 px without horizontal overflow",
        fits,
    )
    .await;
    page.screenshot(&screenshot_path("dashboard-phone.png"), false)
        .await;
    page.screenshot(&screenshot_path("dashboard-phone-full.png"), true)
        .await;
}
