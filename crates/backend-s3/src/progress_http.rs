//! object_store's HTTP client, timed by progress instead of by duration.
//!
//! object_store's own client has a 30 s total timeout by default: a 375 MB download at
//! 100 Mbit/s can never finish. Turning it off and setting reqwest's read timeout instead is
//! not enough either, because reqwest runs that timeout unreset from the start of a request
//! until its answer's head, so sending a part that takes longer than it fails however steadily
//! it moves. [`ProgressConnector`] gives object_store (and our raw listing and big-copy calls,
//! which share its HTTP client) a reqwest client with only a connect timeout, and applies
//! [`Timeouts::idle`](syncengine_core::timeouts::Timeouts::idle) with
//! [`syncengine_core::stall`]: a request fails only after that long without a byte of its body
//! taken or of its answer arriving. Such a failure is an [`HttpErrorKind::Timeout`], which
//! object_store retries like any timeout.

use std::error::Error as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyDataStream, StreamBody};
use object_store::ClientConfigKey;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};
use syncengine_core::stall::{FailWhenStalled, PIECE, Progress, Stalled, until_stalled};

/// Makes object_store's HTTP clients: connect timeout from the [`ClientOptions`] (object_store
/// uses 1 s for instance-metadata endpoints), and no progress for `idle` fails a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProgressConnector {
    pub(crate) idle: Duration,
}

impl HttpConnector for ProgressConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .as_deref()
            == Some("true");
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("syncengine/", env!("CARGO_PKG_VERSION")))
            // As object_store: compression would change the lengths objects are known by.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .https_only(!allow_http)
            // Bytes the system has sent may go unacknowledged this long (reqwest: 30 s).
            .tcp_user_timeout(self.idle);
        if let Some(connect) = options
            .get_config_value(&ClientConfigKey::ConnectTimeout)
            .and_then(|v| syncengine_core::timeouts::parse_duration(&v.replace(' ', "")).ok())
        {
            builder = builder.connect_timeout(connect);
        }
        let client = builder.build().map_err(|e| object_store::Error::Generic {
            store: "HTTP client",
            source: Box::new(e),
        })?;
        Ok(HttpClient::new(ProgressService {
            client,
            idle: self.idle,
        }))
    }
}

#[derive(Debug)]
struct ProgressService {
    client: reqwest::Client,
    idle: Duration,
}

#[async_trait::async_trait]
impl HttpService for ProgressService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        let mut request = reqwest::Request::new(parts.method, url);
        *request.headers_mut() = parts.headers;
        let progress = Progress::new();
        *request.body_mut() = Some(reqwest::Body::wrap(ProgressBody {
            inner: body,
            rest: Bytes::new(),
            progress: progress.clone(),
        }));
        let response = until_stalled(self.client.execute(request), &progress, self.idle)
            .await
            .map_err(stalled)?
            .map_err(http_error)?;
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let chunks = BodyDataStream::new(body).map_err(http_error);
        let chunks = FailWhenStalled::new(chunks, self.idle, stalled);
        let body = HttpResponseBody::new(StreamBody::new(chunks.map_ok(Frame::data)));
        Ok(HttpResponse::from_parts(parts, body))
    }
}

fn stalled(s: Stalled) -> HttpError {
    HttpError::new(HttpErrorKind::Timeout, s)
}

/// Classifies a reqwest error as object_store's own client does (which decides whether it is
/// retried), without the URL: an Azure SAS token travels in the query string.
fn http_error(e: reqwest::Error) -> HttpError {
    let mut kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Unknown
    };
    let mut source = e.source();
    while kind == HttpErrorKind::Unknown
        && let Some(cause) = source
    {
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_closed() || h.is_incomplete_message() || h.is_body_write_aborted() {
                kind = HttpErrorKind::Request;
            } else if h.is_timeout() {
                kind = HttpErrorKind::Timeout;
            }
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::TimedOut => kind = HttpErrorKind::Timeout,
                K::ConnectionAborted | K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => {
                    kind = HttpErrorKind::Interrupted
                }
                _ => {}
            }
        }
        source = cause.source();
    }
    HttpError::new(kind, e.without_url())
}

/// A request body that marks [`Progress`] for each piece (at most [`PIECE`] bytes) the
/// client takes, and keeps the exact length the body declares (so `Content-Length`, which
/// the request is signed with, is unchanged).
struct ProgressBody {
    inner: HttpRequestBody,
    rest: Bytes,
    progress: Progress,
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        loop {
            if !this.rest.is_empty() {
                let piece = this.rest.split_to(this.rest.len().min(PIECE));
                this.progress.mark();
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        match inner.exact() {
            Some(n) => SizeHint::with_exact(n + rest),
            None => {
                let mut h = SizeHint::new();
                h.set_lower(inner.lower() + rest);
                if let Some(upper) = inner.upper() {
                    h.set_upper(upper + rest);
                }
                h
            }
        }
    }
}
