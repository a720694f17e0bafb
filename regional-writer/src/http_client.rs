//! A small HTTP/1 client for the writer's outbound calls: webhooks to edges
//! and `tidemark-writer import` to a running writer. Plain HTTP only: the
//! writer talks to edges and to itself inside a deployment's network.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

pub struct HttpAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl HttpClient {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<HttpAnswer> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body.into()))?;
        let call = async {
            let response = self.inner.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(HttpAnswer { status, body })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| anyhow::anyhow!("{url}: timed out"))?
    }
}
