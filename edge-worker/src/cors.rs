//! Cross-origin access for browser apps, the same policy as the writer's.
//!
//! Apps on their own origins call the edge straight from the page (the SDK
//! points at it). Tokens travel in the `Authorization` header, never in
//! cookies, so any origin may call: nothing ambient is exposed to it, and a
//! page without a token gets the same 401 as anyone else.

use worker::{Headers, Method, Request, Response, Result};

const ALLOW_METHODS: &str = "GET, POST, PUT";
const ALLOW_HEADERS: &str = "authorization, content-type, x-tidemark-consistency";
const EXPOSE_HEADERS: &str = "x-tidemark, x-tidemark-offset, x-tidemark-cache";
/// Browsers cache a preflight answer this long (seconds).
const MAX_AGE: &str = "3600";

/// The answer to a CORS preflight (`OPTIONS` with
/// `Access-Control-Request-Method`), or `None` for any other request.
pub fn preflight(req: &Request) -> Result<Option<Response>> {
    if req.method() != Method::Options
        || req
            .headers()
            .get("access-control-request-method")?
            .is_none()
    {
        return Ok(None);
    }
    let mut response = Response::empty()?.with_status(204);
    let headers = response.headers_mut();
    allow_origin(headers)?;
    headers.set("access-control-allow-methods", ALLOW_METHODS)?;
    headers.set("access-control-allow-headers", ALLOW_HEADERS)?;
    headers.set("access-control-max-age", MAX_AGE)?;
    Ok(Some(response))
}

/// Lets any origin read `response`, and the headers that carry tidemarks.
pub fn expose(mut response: Response) -> Result<Response> {
    let headers = response.headers_mut();
    allow_origin(headers)?;
    headers.set("access-control-expose-headers", EXPOSE_HEADERS)?;
    Ok(response)
}

fn allow_origin(headers: &mut Headers) -> Result<()> {
    headers.set("access-control-allow-origin", "*")
}
