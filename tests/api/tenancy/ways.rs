//! Every way of reading a job (REST, GraphQL, `jobProgress`) and what the caller was told.

use super::*;

/// What a caller was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The job (or a list holding it).
    Sees,
    /// `NOT_FOUND`, or a list without it: the job might as well not exist.
    NotFound,
    /// `FORBIDDEN`: the key lacks a scope, or names another client.
    Forbidden,
    /// `UNAUTHORIZED` (or the WebSocket's refusal at `connection_init`).
    Unauthorized,
}

/// Every way to read a job.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Way {
    RestStatus,
    RestResults,
    RestCsv,
    GraphqlJob,
    GraphqlResults,
    /// `jobs(clientId: <the job's client>)`.
    GraphqlJobs,
    /// `jobProgress` over graphql-transport-ws.
    ProgressTransportWs,
    /// `jobProgress` over the legacy graphql-ws.
    ProgressLegacyWs,
}

pub(crate) const WAYS: [Way; 8] = [
    Way::RestStatus,
    Way::RestResults,
    Way::RestCsv,
    Way::GraphqlJob,
    Way::GraphqlResults,
    Way::GraphqlJobs,
    Way::ProgressTransportWs,
    Way::ProgressLegacyWs,
];

fn answer_for_code(code: &Value, context: &str) -> Answer {
    match code.as_str() {
        Some("NOT_FOUND") => Answer::NotFound,
        Some("FORBIDDEN") => Answer::Forbidden,
        Some("UNAUTHORIZED") => Answer::Unauthorized,
        _ => panic!("unexpected error code {code}: {context}"),
    }
}

/// A job to read: its id and client.
pub(crate) struct Target {
    pub id: String,
    pub client: &'static str,
}

/// Reads `job` the way `way` says, with `key` (none: no header, empty `connection_init`).
pub(crate) async fn read(app: &TestApp, key: Option<&str>, way: Way, job: &Target) -> Answer {
    let id = &job.id;
    match way {
        Way::RestStatus | Way::RestResults | Way::RestCsv => {
            let path = match way {
                Way::RestStatus => format!("/jobs/{id}"),
                Way::RestResults => format!("/jobs/{id}/results"),
                _ => format!("/jobs/{id}/download"),
            };
            let mut request = app.http.get(app.url(&path));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            // Each job holds one domain, its client's; a 200 must carry that job's data.
            let domain = format!("{}.test", job.client);
            if status == 200 {
                match way {
                    Way::RestCsv => {
                        let (header, records) = crate::helpers::parse_csv(&text);
                        assert_eq!(header[0], "domain", "{text}");
                        let domains: Vec<&str> = records.iter().map(|r| r[0].as_str()).collect();
                        assert_eq!(domains, [domain.as_str()], "{path}: {text}");
                    }
                    Way::RestStatus => {
                        let body: Value = serde_json::from_str(&text).unwrap();
                        assert_eq!(body["job_id"], *id, "{body}");
                    }
                    _ => {
                        let body: Value = serde_json::from_str(&text).unwrap();
                        let domains: Vec<&Value> = body["results"]
                            .as_array()
                            .unwrap_or_else(|| panic!("{path}: no results: {body}"))
                            .iter()
                            .map(|r| &r["domain"])
                            .collect();
                        assert_eq!(domains, [&json!(domain)], "{path}: {body}");
                    }
                }
                return Answer::Sees;
            }
            // A refusal is the error shape alone: nothing of the job leaks into it.
            assert!(!text.contains(&domain), "{path} leaks the job: {text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                body.as_object().map(|o| o.keys().collect::<Vec<_>>()),
                Some(vec![&"error".to_owned()]),
                "{path}: {text}"
            );
            assert!(body["error"]["message"].is_string(), "{path}: {text}");
            let answer = answer_for_code(&body["error"]["code"], &text);
            let expected_status = match answer {
                Answer::NotFound => 404,
                Answer::Forbidden => 403,
                _ => 401,
            };
            assert_eq!(status, expected_status, "{path}: {text}");
            answer
        }
        Way::GraphqlJob | Way::GraphqlResults | Way::GraphqlJobs => {
            let (query, variables) = match way {
                Way::GraphqlJob => ("query($id: ID!) { job(id: $id) { id } }", json!({"id": id})),
                Way::GraphqlResults => (
                    "query($id: ID!) { results(jobId: $id) { total } }",
                    json!({"id": id}),
                ),
                _ => (
                    "query($c: String) { jobs(clientId: $c) { jobs { id } } }",
                    json!({"c": job.client}),
                ),
            };
            let request = app
                .http
                .post(app.url("/graphql"))
                .json(&json!({"query": query, "variables": variables}));
            let body = json_answer(request, key).await;
            if let Some(error) = body["errors"].get(0) {
                return answer_for_code(&error["extensions"]["code"], &body.to_string());
            }
            match way {
                Way::GraphqlJob => assert_eq!(body["data"]["job"]["id"], *id, "{body}"),
                Way::GraphqlResults => assert!(body["data"]["results"]["total"].is_i64()),
                _ => {
                    let ids: Vec<&Value> = body["data"]["jobs"]["jobs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|j| &j["id"])
                        .collect();
                    if !ids.contains(&&json!(id)) {
                        return Answer::NotFound;
                    }
                }
            }
            Answer::Sees
        }
        Way::ProgressTransportWs | Way::ProgressLegacyWs => {
            let (protocol, start) = match way {
                Way::ProgressTransportWs => ("graphql-transport-ws", "subscribe"),
                _ => ("graphql-ws", "start"),
            };
            let mut ws = ws_open(app, protocol, None, None).await.unwrap();
            let payload = key.map_or(json!({}), |key| json!({"apiKey": key}));
            match ws_init_with(&mut ws, payload).await {
                Err((4403, _)) => return Answer::Unauthorized,
                Err(other) => panic!("closed at connection_init: {other:?}"),
                Ok(ack) if ack["type"] == "connection_error" => return Answer::Unauthorized,
                Ok(ack) => assert_eq!(ack["type"], "connection_ack", "{ack}"),
            }
            let subscribe = json!({"id": "1", "type": start, "payload": {
                "query": "subscription($id: ID!) { jobProgress(jobId: $id) { jobId status } }",
                "variables": {"id": id},
            }});
            ws.send(Message::Text(subscribe.to_string().into()))
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let message = tokio::time::timeout_at(deadline, ws.next())
                    .await
                    .expect("an answer to the subscription within 10 s")
                    .expect("the socket stays open")
                    .unwrap();
                let Message::Text(text) = message else {
                    continue;
                };
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["id"] != "1" {
                    continue;
                }
                let payload = &frame["payload"];
                let error = if frame["type"] == "error" {
                    payload.get(0)
                } else {
                    payload["errors"].get(0)
                };
                if let Some(error) = error {
                    return answer_for_code(&error["extensions"]["code"], &text);
                }
                assert_eq!(payload["data"]["jobProgress"]["jobId"], *id, "{text}");
                return Answer::Sees;
            }
        }
    }
}
