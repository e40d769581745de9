//! Reading and checking the registry's answers: headers, and the spec's error envelope
//! (distribution-spec v1.1, "Error Codes").

use reqwest::Response;

/// A header as a string (panics with the header's name when absent).
pub fn header(resp: &Response, name: &str) -> String {
    optional_header(resp, name)
        .unwrap_or_else(|| panic!("missing header {name}: {:?}", resp.headers()))
}

/// A header as a string, if present.
pub fn optional_header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}

/// Every value of a repeated header, in order.
pub fn header_values(resp: &Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii header").to_owned())
        .collect()
}

/// The whole body.
pub async fn body(resp: Response) -> Vec<u8> {
    resp.bytes().await.expect("body").to_vec()
}

/// The body as JSON.
pub async fn json(resp: Response) -> serde_json::Value {
    let bytes = body(resp).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)))
}

/// Asserts an error answer: status, and the spec's JSON envelope with `code`.
pub async fn assert_error(resp: Response, status: u16, code: &str) {
    let got = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "status; body {text}");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {text}"));
    assert!(!errors.is_empty(), "empty errors: {text}");
    assert_eq!(errors[0]["code"], code, "code in {text}");
    assert!(errors[0]["message"].is_string(), "message in {text}");
    assert_eq!(
        headers
            .get("docker-distribution-api-version")
            .map(|v| v.to_str().unwrap()),
        Some("registry/2.0")
    );
    assert_nosniff(&headers);
}

/// Asserts `X-Content-Type-Options: nosniff`, which every answer carries (a browser must
/// never run what a blob holds).
pub fn assert_nosniff(headers: &reqwest::header::HeaderMap) {
    let value = headers.get("x-content-type-options");
    assert_eq!(value.map(|v| v.to_str().unwrap()), Some("nosniff"));
}
