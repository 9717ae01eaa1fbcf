//! A local HTTP server that records every request and answers as a forge's API does, for
//! the tests of what spanblame sends to forges (no hosted forge can be reached here).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Conduit's `params` JSON from the form body.
    pub(crate) fn conduit_params(&self) -> Value {
        let form = form_pairs(&self.body);
        let params = form.iter().find(|(k, _)| k == "params").map(|(_, v)| v.as_str());
        serde_json::from_str(params.unwrap_or("null")).unwrap()
    }
}

/// The pairs of an `application/x-www-form-urlencoded` body.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(k, v)| (decode(k), decode(v))))
        .collect()
}

/// A local HTTP server that records every request and answers like a forge API: Conduit's
/// envelope (HTTP 200) under `/phabricator/api/`, a new pull or merge request's number and
/// page, `201 {"id": n}` elsewhere; the first
/// `fail_first` requests get `503` instead.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// How many of the first requests are answered `503`; settable to let it recover.
    pub(crate) fail_first: Arc<AtomicUsize>,
}

impl Recorder {
    pub(crate) async fn start(fail_first: usize) -> (Recorder, String) {
        let recorder = Recorder::default();
        recorder.fail_first.store(fail_first, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let shared = recorder.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let shared = shared.clone();
                async move { shared.answer(method, uri, headers, body) }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (recorder, format!("http://{addr}"))
    }

    fn answer(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let path = uri.path().to_owned();
        let mut requests = self.requests.lock().unwrap();
        requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            headers,
            body: body.to_vec(),
        });
        let n = requests.len();
        if self.fail_first.load(Ordering::SeqCst) >= n {
            return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
        }
        if path.starts_with("/phabricator/api/") {
            let result = json!({"object": {"id": 123, "phid": "PHID-DREV-x"}, "transactions": [{"phid": "PHID-XACT-1"}]});
            return axum::Json(json!({"result": result, "error_code": null, "error_info": null}))
                .into_response();
        }
        // GitLab's user search answers a list; a new pull or merge request its number and
        // page, as the forges do.
        if path.ends_with("/api/v4/users") {
            return axum::Json(json!([{"id": 40 + n, "username": "someone"}])).into_response();
        }
        let created = if path.ends_with("/pulls") {
            json!({"id": n, "number": n, "html_url": format!("https://forge.example.com/pull/{n}")})
        } else if path.ends_with("/merge_requests") {
            json!({"id": n, "iid": n, "web_url": format!("https://forge.example.com/-/merge_requests/{n}")})
        } else {
            json!({"id": n})
        };
        (StatusCode::CREATED, axum::Json(created)).into_response()
    }

    pub(crate) fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}
