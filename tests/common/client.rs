//! The REST calls both test binaries make of a running app (a test app or a child process).

/// Creates a job through `POST /jobs` at `base`; returns its id.
pub async fn create_job_at<D: serde::Serialize>(base: &str, client: &str, domains: &[D]) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/jobs"))
        .json(&serde_json::json!({"client_id": client, "domains": domains}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{response:?}");
    let created: serde_json::Value = response.json().await.unwrap();
    created["job_id"].as_str().unwrap().to_owned()
}
