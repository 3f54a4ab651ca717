//! A fault-injecting HTTP proxy between the code under test and moto: a
//! flaky network on demand, reproducible.
//!
//! Point `coffer` (or an SDK client) at [`FaultProxy::endpoint`] instead of
//! moto's; every request goes through to moto unchanged unless a [`Rule`]
//! matches it, and then the rule's [`Fault`] is applied: the response is
//! lost after moto applied the request, the body is cut after some bytes,
//! or the request is held back for a while. Faults are counted, so a test
//! can assert that the fault it is about really happened.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&moto);
//! proxy.add(Rule::new(Fault::DropResponse).method("PUT").path_contains("/manifests/").times(1));
//! // … run coffer against proxy.endpoint …
//! assert_eq!(proxy.injected(0), 1);
//! ```

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::Moto;

/// What to do to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request (moto applies it), then close the connection
    /// without answering: the client never learns that it succeeded.
    DropResponse,
    /// Forward, send the status, the headers (with the full
    /// `Content-Length`) and the first `after` bytes of the body, then
    /// close the connection. Bodies no longer than `after` pass untouched
    /// (and are not counted).
    CutBody { after: usize },
    /// Hold the request back this long, then forward it normally.
    Delay(Duration),
    /// Answer with this HTTP status and an S3-style error document
    /// (`AccessDenied` for 403, else `InternalError`) without forwarding:
    /// moto never sees the request.
    Refuse { status: u16 },
    /// Answer with this status and an error `code` in the EC2/query
    /// protocol's error document, without forwarding: an API call AWS
    /// refused (a 4xx code is not retried by the SDKs).
    QueryError { status: u16, code: &'static str },
}

/// Which requests a fault applies to, and how often.
#[derive(Debug, Clone)]
pub struct Rule {
    fault: Fault,
    method: Option<String>,
    path_contains: Option<String>,
    /// Requests that must carry this header (name lower-case).
    header: Option<String>,
    /// Query-protocol requests (EC2, IAM, RDS…) of this `Action`.
    action: Option<String>,
    /// Apply to every `one_in`-th matching request (1: each).
    one_in: usize,
    /// Stop after this many faults.
    times: usize,
}

impl Rule {
    pub fn new(fault: Fault) -> Self {
        Self { fault, method: None, path_contains: None, header: None, action: None, one_in: 1, times: usize::MAX }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// The request's path and query contain `text` (e.g. `/manifests/`).
    pub fn path_contains(mut self, text: &str) -> Self {
        self.path_contains = Some(text.to_string());
        self
    }

    /// The query-protocol call (`Action=AttachVolume` in the form body or the query).
    pub fn action(mut self, action: &str) -> Self {
        self.action = Some(action.to_string());
        self
    }

    pub fn with_header(mut self, name: &str) -> Self {
        self.header = Some(name.to_ascii_lowercase());
        self
    }

    pub fn one_in(mut self, n: usize) -> Self {
        self.one_in = n.max(1);
        self
    }

    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, request: &Seen) -> bool {
        self.method.as_ref().is_none_or(|m| &request.method == m)
            && self.path_contains.as_ref().is_none_or(|p| request.path.contains(p.as_str()))
            && self.header.as_ref().is_none_or(|h| request.headers.contains(h))
            && self.action.as_ref().is_none_or(|a| request.action.as_deref() == Some(a.as_str()))
    }

    /// Whether the fault can happen at this point: a delay before the
    /// request is forwarded, the others once the response is known (a body
    /// no longer than `after` cannot be cut).
    fn applies(&self, response_body: Option<usize>) -> bool {
        match (self.fault, response_body) {
            (Fault::Delay(_) | Fault::Refuse { .. } | Fault::QueryError { .. }, None) => true,
            (Fault::DropResponse, Some(_)) => true,
            (Fault::CutBody { after }, Some(len)) => len > after,
            _ => false,
        }
    }
}

/// What a rule looks at in a request.
struct Seen {
    method: String,
    path: String,
    headers: Vec<String>,
    action: Option<String>,
}

impl Seen {
    fn of(request: &hyper::http::request::Parts, body: &[u8]) -> Self {
        let query = request.uri.query().unwrap_or_default().as_bytes();
        // Action names are plain ASCII words: no form decoding needed to find one.
        let action = [body, query].into_iter().find_map(|form| {
            form.split(|b| *b == b'&')
                .find_map(|pair| pair.strip_prefix(b"Action="))
                .map(|name| String::from_utf8_lossy(name).into_owned())
        });
        Self {
            method: request.method.as_str().to_string(),
            path: request.uri.path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_default(),
            headers: request.headers.keys().map(|k| k.as_str().to_string()).collect(),
            action,
        }
    }
}

#[derive(Default)]
struct Armed {
    rule: Option<Rule>,
    matched: AtomicUsize,
    injected: AtomicUsize,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Arc<Armed>>>,
    requests: AtomicUsize,
}

impl State {
    /// The fault for this request, if a rule picks it (first rule wins);
    /// `response_body`: None before forwarding, the body's length after.
    fn fault_for(&self, request: &Seen, response_body: Option<usize>) -> Option<Fault> {
        let rules = self.rules.lock().unwrap().clone();
        for armed in rules {
            let Some(rule) = &armed.rule else { continue };
            if !rule.matches(request) || !rule.applies(response_body) {
                continue;
            }
            let n = armed.matched.fetch_add(1, Ordering::SeqCst) + 1;
            if n % rule.one_in != 0 {
                continue;
            }
            // Count the fault only if the rule still has one to give.
            let given =
                armed.injected.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |i| (i < rule.times).then_some(i + 1));
            if given.is_ok() {
                return Some(rule.fault);
            }
        }
        None
    }
}

/// A running proxy on a free 127.0.0.1 port, forwarding to one moto server;
/// stopped on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: give this to the client instead of moto's.
    pub endpoint: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type ProxyBody = BoxBody<Bytes, std::io::Error>;

impl FaultProxy {
    pub fn start(moto: &Moto) -> FaultProxy {
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, moto.port()));
        let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(State::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = {
            let state = state.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(serve(listener, upstream, state, stopped));
            })
        };
        FaultProxy { endpoint, state, stop: Some(stop), thread: Some(thread) }
    }

    /// Arms a rule; returns its number for [`FaultProxy::injected`].
    pub fn add(&self, rule: Rule) -> usize {
        let mut rules = self.state.rules.lock().unwrap();
        rules.push(Arc::new(Armed { rule: Some(rule), ..Armed::default() }));
        rules.len() - 1
    }

    /// Disarms every rule (counts stay readable).
    pub fn clear(&self) {
        for armed in self.state.rules.lock().unwrap().iter_mut() {
            *armed = Arc::new(Armed {
                rule: None,
                matched: AtomicUsize::new(armed.matched.load(Ordering::SeqCst)),
                injected: AtomicUsize::new(armed.injected.load(Ordering::SeqCst)),
            });
        }
    }

    /// How many times rule `n` injected its fault.
    pub fn injected(&self, n: usize) -> usize {
        self.state.rules.lock().unwrap()[n].injected.load(Ordering::SeqCst)
    }

    /// How many requests rule `n` matched where its fault could apply
    /// (faulted or not).
    pub fn matched(&self, n: usize) -> usize {
        self.state.rules.lock().unwrap()[n].matched.load(Ordering::SeqCst)
    }

    /// Requests forwarded so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    state: Arc<State>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { handle(request, upstream, &state).await }
            });
            // A fault ends the connection with an error: that is the point.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn full(body: Bytes) -> ProxyBody {
    Full::new(body).map_err(|never: Infallible| match never {}).boxed()
}

async fn handle(
    request: Request<Incoming>,
    upstream: SocketAddr,
    state: &State,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    let seen = Seen::of(&parts, &body);
    state.requests.fetch_add(1, Ordering::SeqCst);
    match state.fault_for(&seen, None) {
        Some(Fault::Delay(by)) => tokio::time::sleep(by).await,
        Some(Fault::Refuse { status }) => {
            let code = if status == 403 { "AccessDenied" } else { "InternalError" };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>fault proxy: refused</Message></Error>"
            );
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(full(Bytes::from(body)))
                .expect("a refusal"));
        }
        Some(Fault::QueryError { status, code }) => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>fault proxy: refused</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
            );
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "text/xml")
                .body(full(Bytes::from(body)))
                .expect("an error"));
        }
        _ => {}
    }
    let response = match forward(parts, body, upstream).await {
        Ok(response) => response,
        Err(e) => {
            return Ok(Response::builder()
                .status(502)
                .body(full(Bytes::from(format!("fault proxy: moto did not answer: {e}"))))
                .expect("a 502 response"));
        }
    };
    let (parts, body) = response.into_parts();
    match state.fault_for(&seen, Some(body.len())) {
        Some(Fault::DropResponse) => Err(std::io::Error::other("fault proxy: response dropped")),
        Some(Fault::CutBody { after }) => {
            let head = body.slice(..after.min(body.len()));
            // The pause lets hyper flush the head and the first bytes: an
            // error it sees at once aborts the connection before anything
            // is written (a failed call, which SDKs retry), not a cut body.
            let frames = futures::StreamExt::chain(
                futures::stream::iter([Ok(Frame::data(head))]),
                futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("fault proxy: body cut"))
                }),
            );
            Ok(Response::from_parts(parts, StreamBody::new(frames).boxed()))
        }
        _ => Ok(Response::from_parts(parts, full(body))),
    }
}

/// Sends the request to moto over a fresh connection; the whole response.
async fn forward(
    mut parts: hyper::http::request::Parts,
    body: Bytes,
    upstream: SocketAddr,
) -> Result<Response<Bytes>, Box<dyn std::error::Error + Send + Sync>> {
    // The proxy already answered `100 Continue` to the client; moto gets the
    // whole body at once.
    parts.headers.remove(hyper::header::EXPECT);
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(Request::from_parts(parts, Full::new(body))).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
