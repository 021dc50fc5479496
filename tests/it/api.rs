//! The HTTP surface: shapes, errors, CORS and the OpenAPI document (in-memory store).

use chatstats::api::{AppState, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::*;

async fn call(
    path: &str,
    method: &str,
    headers: &[(&str, &str)],
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let app = router(AppState::new(memory_store(), api_settings()));
    let mut request = axum::http::Request::builder().uri(path).method(method);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

async fn json_of(path: &str) -> (u16, Value) {
    let (status, _, body) = call(path, "GET", &[]).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_root_and_empty_statistics_answer_in_the_typescript_shapes() {
    assert_eq!(json_of("/").await, (200, json!({"status": true})));
    assert_eq!(json_of("/stats/words").await, (200, json!([])));
    assert_eq!(json_of("/stats/failedMessages").await, (200, json!([])));
    let (status, stats) = json_of("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["messagesPerSecond"], 0);
    let (status, health) = json_of("/healthcheck").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["redisStatus"], "in-memory");
    let stamp = health["serverTimestamp"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).is_ok(),
        "{stamp}"
    );
    // Milliseconds and `Z`, as JavaScript's `toISOString()`: `2026-11-22T10:00:00.000Z`.
    assert_eq!(stamp.len(), 24, "{stamp}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "{stamp}"
    );
}

#[tokio::test]
async fn unknown_routes_get_a_fastify_shaped_404_and_wrong_methods_a_405() {
    assert_eq!(
        json_of("/nope").await,
        (
            404,
            json!({"statusCode": 404, "error": "Not Found", "message": "Route GET:/nope not found"})
        )
    );
    // Fastify's message names the request's URL, query included.
    assert_eq!(
        json_of("/nope?x=1").await.1["message"],
        "Route GET:/nope?x=1 not found"
    );
    let (status, headers, body) = call("/stats", "POST", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(headers.get("allow").unwrap(), "GET, HEAD");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"statusCode": 405, "error": "Method Not Allowed", "message": "Method POST is not allowed on /stats"})
    );
}

#[tokio::test]
async fn json_answers_say_utf_8_as_fastify_did() {
    for (path, method) in [
        ("/", "GET"),
        ("/stats/words", "GET"),
        ("/stats/words", "HEAD"),
        ("/stats/words?window=5m", "GET"),
        ("/stats/activity", "GET"),
        ("/healthcheck", "GET"),
        ("/messages", "GET"),
        ("/nope", "GET"),
        ("/stats", "POST"),
        ("/stats/words?limit=x", "GET"),
    ] {
        let (_, headers, _) = call(path, method, &[]).await;
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/json; charset=utf-8",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_bad_limit_is_a_400_in_the_error_shape() {
    for (query, message) in [
        ("0", "querystring/limit must be >= 1"),
        ("-5", "querystring/limit must be >= 1"),
        ("1001", "querystring/limit must be <= 1000"),
        ("ten", "querystring/limit must be integer"),
        ("1.5", "querystring/limit must be integer"),
    ] {
        for list in ["words", "nicks", "rooms"] {
            let (status, body) = json_of(&format!("/stats/{list}?limit={query}")).await;
            assert_eq!(
                (status, body),
                (
                    400,
                    json!({"statusCode": 400, "error": "Bad Request", "message": message})
                ),
                "{list} {query}"
            );
        }
    }
}

#[tokio::test]
async fn cors_is_on_for_any_origin_by_default() {
    let (_, headers, _) = call("/stats", "GET", &[("origin", "http://dashboard.example")]).await;
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), "*");
    let (status, headers, _) = call(
        "/stats/words",
        "OPTIONS",
        &[
            ("origin", "http://dashboard.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert!(status < 300, "preflight answered {status}");
    assert!(headers.get("access-control-allow-methods").is_some());
    // A page posting with a bearer token: POST and the headers asked for are allowed.
    let (status, headers, _) = call(
        "/messages",
        "OPTIONS",
        &[
            ("origin", "http://dashboard.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
    .await;
    assert!(status < 300, "preflight answered {status}");
    let allowed = |name: &str| headers[name].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed("access-control-allow-methods").contains("post"));
    assert!(allowed("access-control-allow-headers").contains("authorization"));
    assert!(allowed("access-control-allow-headers").contains("content-type"));
    // Ranged and conditional answers' headers are readable by the page.
    let (_, headers, _) = call(
        "/stats/words?window=5m",
        "GET",
        &[("origin", "http://dashboard.example")],
    )
    .await;
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    for name in ["range-from", "range-to", "etag"] {
        assert!(exposed.to_ascii_lowercase().contains(name), "{exposed}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_with_schemas_and_examples() {
    let (status, doc) = json_of("/documentation/json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/",
        "/healthcheck",
        "/stats",
        "/stats/words",
        "/stats/nicks",
        "/stats/rooms",
        "/stats/failedMessages",
        "/documentation/json",
    ] {
        let get = &paths
            .get(route)
            .unwrap_or_else(|| panic!("{route} missing"))["get"];
        for (code, response) in get["responses"].as_object().unwrap() {
            if code == "304" {
                assert!(response["content"].is_null(), "a 304 has no body");
                continue;
            }
            let media = &response["content"]["application/json"];
            assert!(media["schema"].is_object(), "{route} {code} has no schema");
            let has_example = media.get("example").is_some()
                || media["schema"].get("example").is_some()
                || media["schema"]["$ref"].as_str().is_some_and(|r| {
                    let name = r.rsplit('/').next().unwrap();
                    doc["components"]["schemas"][name].get("example").is_some()
                })
                || media["schema"]["items"]["$ref"].is_string();
            assert!(has_example, "{route} {code} has no example");
        }
    }
    let limit = &paths["/stats/words"]["get"]["parameters"][0];
    assert_eq!(limit["name"], "limit");
    assert_eq!(limit["schema"]["maximum"], 1000);
    // A list takes every filter but its own (that one is a 400).
    let names = |route: &str| -> Vec<String> {
        paths[route]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for (route, own) in [
        ("/stats/words", None),
        ("/stats/emotes", None),
        ("/stats/rooms", Some("room")),
        ("/stats/nicks", Some("nick")),
    ] {
        let names = names(route);
        for filter in ["limit", "room", "nick", "from", "to", "window"] {
            assert_eq!(
                names.iter().any(|n| n == filter),
                Some(filter) != own,
                "{route} {filter}: {names:?}"
            );
        }
    }
    // Each route's 400 describes that route's parameters.
    let bad = |route: &str| {
        paths[route]["get"]["responses"]["400"]["content"]["application/json"]["example"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(bad("/messages").contains("200"), "{}", bad("/messages"));
    assert!(
        bad("/stats/activity").contains("bucket"),
        "{}",
        bad("/stats/activity")
    );
    // History and the live feed: JSON pages, then SSE and WebSocket described as such.
    for route in ["/messages", "/messages/{id}"] {
        let ok = &paths[route]["get"]["responses"]["200"]["content"]["application/json"];
        assert!(ok["schema"]["$ref"].is_string(), "{route}");
    }
    assert_eq!(
        paths["/messages/{id}"]["get"]["responses"]["404"]["content"]["application/json"]["example"]
            ["statusCode"],
        404
    );
    let sse = &paths["/live"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert!(
        sse["example"]
            .as_str()
            .is_some_and(|e| e.contains("event: stats"))
    );
    let ws = &paths["/ws"]["get"]["responses"]["101"]["description"];
    assert!(ws.as_str().is_some_and(|d| d.contains("WebSocket")));
    for route in ["/live", "/ws"] {
        let room = &paths[route]["get"]["parameters"][0];
        assert_eq!(room["name"], "room", "{route}");
    }
    // Conditional requests on the statistics, the read rate limit on every read.
    for route in ["/stats/words", "/stats/rooms/{room}", "/stats/activity"] {
        let get = &paths[route]["get"];
        assert!(get["responses"]["304"].is_object(), "{route}: 304");
        assert!(
            get["responses"]["200"]["headers"]["ETag"].is_object(),
            "{route}: ETag"
        );
        let parameters = get["parameters"].as_array().unwrap();
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "If-None-Match" && p["in"] == "header"),
            "{route}: If-None-Match"
        );
    }
    for route in ["/stats/words", "/messages", "/healthcheck"] {
        let limited = &paths[route]["get"]["responses"]["429"];
        assert!(
            limited["headers"]["Retry-After"].is_object(),
            "{route}: 429"
        );
    }
    let page = &paths["/documentation"]["get"]["responses"]["200"]["content"];
    assert!(page["text/html"].is_object(), "/documentation: {page}");
    for path in ["/documentation/", "/documentation"] {
        let (status, _, html) = call(path, "GET", &[]).await;
        assert_eq!(status, 200, "{path}");
        let html = String::from_utf8_lossy(&html);
        assert!(html.contains("swagger"), "{path}: Swagger UI page");
        // Its assets are relative: from `/documentation` they are named from the folder.
        if path == "/documentation" {
            assert!(html.contains("<base href=\"/documentation/\">"), "{html}");
        }
    }
}

#[tokio::test]
async fn oversized_requests_are_refused_in_the_error_shape() {
    let long_query = format!("/stats/words?limit={}", "1".repeat(9000));
    let (status, _, body) = call(&long_query, "GET", &[]).await;
    assert_eq!(status, 414);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["statusCode"],
        414
    );
    let big = "a".repeat(20_000);
    let (status, _, body) = call("/stats", "GET", &[("x-big", &big)]).await;
    assert_eq!(status, 431);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"],
        "Request Header Fields Too Large"
    );
    let (status, _, body) = call("/stats", "POST", &[("content-length", "10000000")]).await;
    assert_eq!(status, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["statusCode"],
        413
    );
}

#[tokio::test]
async fn stats_answers_carry_an_etag_and_if_none_match_gives_304() {
    for cache in [
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(50),
    ] {
        let store = memory_store();
        record_bytes(
            &store,
            &std::fs::read(fixture("multiple-messages.txt")).unwrap(),
        )
        .await;
        let settings = chatstats::api::ApiSettings {
            cache,
            ..api_settings()
        };
        let app = router(AppState::new(store, settings));
        let send = |method: &str, tag: Option<String>| {
            let mut request = axum::http::Request::builder()
                .method(method)
                .uri("/stats/words");
            if let Some(tag) = tag {
                request = request.header("if-none-match", tag);
            }
            app.clone()
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
        };
        let first = send("GET", None).await.unwrap();
        assert_eq!(first.status(), 200);
        let tag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert!(tag.starts_with("W/\""), "{tag}");
        let length = axum::body::to_bytes(first.into_body(), 1 << 20)
            .await
            .unwrap()
            .len();
        // HEAD stands for the GET: the same tag and length, without a body.
        let head = send("HEAD", None).await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["etag"], tag.as_str(), "cache {cache:?}");
        assert_eq!(
            head.headers()["content-length"],
            length.to_string().as_str(),
            "cache {cache:?}"
        );
        for method in ["GET", "HEAD"] {
            let again = send(method, Some(tag.clone())).await.unwrap();
            assert_eq!(again.status(), 304, "{method}, cache {cache:?}");
            // A 304 names no length but the 200's (RFC 9110 8.6).
            if let Some(given) = again.headers().get("content-length") {
                assert_eq!(given, length.to_string().as_str(), "{method}");
            }
            let body = axum::body::to_bytes(again.into_body(), 1024).await.unwrap();
            assert!(body.is_empty());
            let other = send(method, Some("W/\"nope\"".to_owned())).await.unwrap();
            assert_eq!(other.status(), 200, "{method}");
        }
    }
}

#[tokio::test]
async fn large_answers_are_compressed_for_clients_that_ask() {
    let (status, headers, body) =
        call("/documentation/json", "GET", &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert!(body.starts_with(&[0x1f, 0x8b]), "a gzip stream");
    for encoding in ["br", "deflate"] {
        let (status, headers, _) = call(
            "/documentation/json",
            "GET",
            &[("accept-encoding", encoding)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-encoding"], encoding);
    }
    // An image is sent as it is, so its HEAD keeps the length.
    let (_, get, png) = call(
        "/documentation/favicon-32x32.png",
        "GET",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert!(get.get("content-encoding").is_none());
    let (_, head, _) = call(
        "/documentation/favicon-32x32.png",
        "HEAD",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(head["content-length"], png.len().to_string().as_str());
    // A HEAD stands for that GET: no length (the GET sends none), and the same Vary; also
    // where the answer comes from the cache, without its body.
    for path in ["/documentation/json", "/stats/activity?bucket=1m"] {
        let (status, get, _) = call(path, "GET", &[("accept-encoding", "gzip")]).await;
        assert_eq!(
            (status, &get["content-encoding"]),
            (200, &"gzip".parse().unwrap())
        );
        let (status, head, _) = call(path, "HEAD", &[("accept-encoding", "gzip")]).await;
        assert_eq!(status, 200);
        assert!(head.get("content-length").is_none(), "{path}: {head:?}");
        assert!(
            head.get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("accept-encoding")),
            "{path}: {head:?}"
        );
        // Without a coding it is the identity answer's length.
        for accepted in [None, Some("identity"), Some("gzip;q=0")] {
            let extra: Vec<(&str, &str)> = accepted
                .map(|a| ("accept-encoding", a))
                .into_iter()
                .collect();
            let (_, get, body) = call(path, "GET", &extra).await;
            assert!(get.get("content-encoding").is_none(), "{path} {accepted:?}");
            let (_, head, _) = call(path, "HEAD", &extra).await;
            assert_eq!(
                head["content-length"],
                body.len().to_string().as_str(),
                "{path} {accepted:?}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    chatstats::telemetry::metrics::install();
    let store = memory_store();
    let api = TestApi::spawn(store.clone()).await;
    assert_eq!(api.get("/stats/words").await.0, 200);
    record_bytes(
        &store,
        &std::fs::read(fixture("multiple-messages.txt")).unwrap(),
    )
    .await;
    let text = reqwest::get(api.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "chatstats_http_request_seconds_bucket{route=\"/stats/words\",status=\"200\"",
        "chatstats_messages_total",
        "chatstats_store_call_seconds_bucket",
        "chatstats_store_call_seconds_bucket{kind=\"read\"",
        "chatstats_store_calls_in_flight",
        // At zero until they happen: exported from the start.
        "chatstats_upstream_reconnects_total",
        "chatstats_store_retries_total",
        "chatstats_failed_messages_total",
        "chatstats_ingested_total",
        "chatstats_ingest_rejected_total{reason=\"stalled\"}",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
}
