//! The real `tidemark-writer` binary, started as a process on loopback.

use tidemark_e2e::WriterProcess;

#[test]
fn writer_binary_serves_health_on_a_picked_port() {
    let data = std::env::temp_dir().join(format!("tidemark-e2e-{}", std::process::id()));
    let writer = WriterProcess::start(&data).expect("writer starts");
    assert!(
        writer.base_url.starts_with("http://127.0.0.1:"),
        "{}",
        writer.base_url
    );
    let (status, body) = writer.get_json("/healthz").unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["service"], "tidemark-writer");
    let (status, body) = writer.get_json("/no-such-route").unwrap();
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    drop(writer);
    let _ = std::fs::remove_dir_all(data);
}
