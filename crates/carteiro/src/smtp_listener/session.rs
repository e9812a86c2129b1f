//! One SMTP session: ESMTP with PIPELINING, STARTTLS, AUTH PLAIN/LOGIN with a
//! company's API key, SIZE, 8BITMIME and SMTPUTF8. Replies carry enhanced
//! status codes (RFC 3463) and a sentence. Requests are parsed by smtp-proto.

use std::borrow::Cow;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carteiro_core::address::EmailAddress;
use carteiro_core::id::CompanySlug;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::service::{ServiceError, auth, settings, submit};

/// Most recipients of one message, as the API's batch of addresses allows.
const MAX_RECIPIENTS: usize = 1000;
/// Wrong logins before the session is closed.
const MAX_AUTH_FAILURES: usize = 3;

pub struct Session<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    tls: bool,
    greeted: bool,
    company: Option<CompanySlug>,
    mail_from: Option<String>,
    recipients: Vec<String>,
    commands: usize,
    auth_failures: usize,
}

/// What the session reads next.
enum Reading {
    Commands,
    /// The lines of a message, up to the lone dot; `too_big` once over the limit.
    Data {
        receiver: DataReceiver,
        body: Vec<u8>,
        too_big: bool,
    },
    /// An AUTH exchange's next line.
    Auth(AuthStep),
}

#[derive(Clone)]
enum AuthStep {
    PlainResponse,
    LoginUser,
    LoginPassword,
}

/// How a read of the session ends.
enum Next {
    Continue,
    StartTls,
    Close,
}

fn reply(code: u16, enhanced: &str, text: &str) -> String {
    format!("{code} {enhanced} {text}\r\n")
}

impl<'a> Session<'a> {
    pub fn new(shared: &'a Shared, peer: SocketAddr) -> Self {
        Self {
            shared,
            peer,
            tls: false,
            greeted: false,
            company: None,
            mail_from: None,
            recipients: Vec::new(),
            commands: 0,
            auth_failures: 0,
        }
    }

    pub async fn run(mut self, mut stream: TcpStream, shutdown: CancellationToken) {
        let greeting = format!("220 {} ESMTP carteiro\r\n", self.shared.state.delivery.hostname);
        if stream.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        if !matches!(self.exchange(&mut stream, &shutdown).await, Next::StartTls) {
            return;
        }
        let Ok(Ok(mut tls)) = tokio::time::timeout(self.shared.idle, self.shared.tls.accept(stream)).await else {
            return;
        };
        // RFC 3207: after TLS, the client starts over; nothing said before counts.
        self.tls = true;
        self.greeted = false;
        self.company = None;
        self.reset();
        self.exchange(&mut tls, &shutdown).await;
        let _ = tls.shutdown().await;
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }

    /// Reads and answers until the client quits, asks for TLS, or the session must end.
    /// What was read past a STARTTLS is thrown away (RFC 3207 §5).
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        shutdown: &CancellationToken,
    ) -> Next {
        let mut buf = vec![0u8; 16 * 1024];
        let mut requests = RequestReceiver::default();
        let mut reading = Reading::Commands;
        let mut line = Vec::new();
        loop {
            let read = tokio::select! {
                read = tokio::time::timeout(self.shared.idle, stream.read(&mut buf)) => read,
                _ = shutdown.cancelled(), if matches!(reading, Reading::Commands) => {
                    let _ = stream.write_all(reply(421, "4.3.2", "carteiro is shutting down; try again later").as_bytes()).await;
                    return Next::Close;
                }
            };
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Close,
                Ok(Ok(n)) => n,
                Err(_) => {
                    let _ = stream.write_all(reply(421, "4.4.2", "idle for too long; closing").as_bytes()).await;
                    return Next::Close;
                }
            };
            let mut bytes = buf[..n].iter();
            let mut out = String::new();
            let mut next = Next::Continue;
            while !bytes.as_slice().is_empty() && matches!(next, Next::Continue) {
                match &mut reading {
                    Reading::Commands => match requests.ingest(&mut bytes) {
                        Ok(request) => {
                            let request = request.into_owned();
                            self.commands += 1;
                            if self.commands > self.shared.max_commands {
                                out.push_str(&reply(421, "4.7.0", "too many commands in one session; closing"));
                                next = Next::Close;
                                break;
                            }
                            let (answer, then) = self.command(request, &mut reading).await;
                            out.push_str(&answer);
                            next = then;
                        }
                        Err(ParseError::NeedsMoreData { .. }) => break,
                        Err(error) => {
                            self.commands += 1;
                            out.push_str(&refusal(&error));
                            if self.commands > self.shared.max_commands {
                                next = Next::Close;
                            }
                        }
                    },
                    Reading::Data { receiver, body, too_big } => {
                        let done = receiver.ingest(&mut bytes, body);
                        if body.len() > self.shared.state.delivery.max_message_bytes {
                            // Read on to the end, keeping nothing: the reply comes after the dot.
                            *too_big = true;
                            body.clear();
                        }
                        if done {
                            let (body, too_big) = (std::mem::take(body), *too_big);
                            reading = Reading::Commands;
                            out.push_str(&self.message(body, too_big).await);
                        }
                    }
                    Reading::Auth(step) => {
                        let step = step.clone();
                        let rest = bytes.as_slice();
                        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
                            line.extend_from_slice(rest);
                            bytes = [].iter();
                            if line.len() > 4096 {
                                out.push_str(&reply(500, "5.5.6", "the line is too long"));
                                next = Next::Close;
                            }
                            break;
                        };
                        line.extend_from_slice(&rest[..end]);
                        bytes = rest[end + 1..].iter();
                        let answer = String::from_utf8_lossy(&line).trim().to_owned();
                        line.clear();
                        reading = Reading::Commands;
                        let (text, then) = self.auth_step(step, &answer, &mut reading).await;
                        out.push_str(&text);
                        next = then;
                    }
                }
            }
            if !out.is_empty() && stream.write_all(out.as_bytes()).await.is_err() {
                return Next::Close;
            }
            if !matches!(next, Next::Continue) {
                return next;
            }
        }
    }

    async fn command(&mut self, request: Request<String>, reading: &mut Reading) -> (String, Next) {
        let answer = match request {
            Request::Ehlo { host } => {
                self.greeted = true;
                self.reset();
                return (self.ehlo(&host), Next::Continue);
            }
            Request::Helo { host } => {
                self.greeted = true;
                self.reset();
                format!("250 {} greets {host}\r\n", self.shared.state.delivery.hostname)
            }
            Request::StartTls if self.tls => reply(503, "5.5.1", "TLS is already on"),
            Request::StartTls => return (reply(220, "2.0.0", "ready to start TLS"), Next::StartTls),
            Request::Auth { .. } if self.company.is_some() => reply(503, "5.5.1", "already logged in"),
            Request::Auth { .. } if !self.may_log_in() => {
                reply(538, "5.7.11", "log in only over TLS: send STARTTLS first")
            }
            Request::Auth { mechanism, initial_response } => {
                return self.auth(mechanism, &initial_response, reading).await;
            }
            Request::Mail { .. } | Request::Rcpt { .. } | Request::Data if !self.greeted => {
                reply(503, "5.5.1", "say EHLO first")
            }
            Request::Mail { .. } | Request::Rcpt { .. } | Request::Data if self.company.is_none() => {
                reply(530, "5.7.0", "log in first: AUTH with a company API key as the password")
            }
            Request::Mail { .. } if self.mail_from.is_some() => {
                reply(503, "5.5.1", "a sender is already given: RSET first")
            }
            Request::Mail { from } => {
                if from.size > self.shared.state.delivery.max_message_bytes {
                    reply(
                        552,
                        "5.3.4",
                        &format!(
                            "the message is over the limit of {} bytes",
                            self.shared.state.delivery.max_message_bytes
                        ),
                    )
                } else if !from.address.is_empty() && EmailAddress::parse("from", &from.address).is_err() {
                    reply(501, "5.1.7", "the sender address is not valid")
                } else {
                    self.mail_from = Some(from.address);
                    reply(250, "2.1.0", "sender ok")
                }
            }
            Request::Rcpt { .. } if self.mail_from.is_none() => {
                reply(503, "5.5.1", "give the sender (MAIL FROM) first")
            }
            Request::Rcpt { .. } if self.recipients.len() >= MAX_RECIPIENTS => {
                reply(452, "4.5.3", &format!("at most {MAX_RECIPIENTS} recipients a message; send the rest in another"))
            }
            Request::Rcpt { to } => match EmailAddress::parse("to", &to.address) {
                Ok(address) => {
                    self.recipients.push(address.as_str().to_owned());
                    reply(250, "2.1.5", "recipient ok")
                }
                Err(_) => reply(501, "5.1.3", "the recipient address is not valid"),
            },
            Request::Data if self.recipients.is_empty() => reply(554, "5.5.1", "no valid recipients"),
            Request::Data => {
                *reading = Reading::Data { receiver: DataReceiver::new(), body: Vec::new(), too_big: false };
                "354 end the message with <CR><LF>.<CR><LF>\r\n".to_owned()
            }
            Request::Rset => {
                self.reset();
                reply(250, "2.0.0", "reset")
            }
            Request::Noop { .. } => reply(250, "2.0.0", "ok"),
            Request::Vrfy { .. } => reply(252, "2.5.0", "cannot verify the user, but will try to deliver"),
            Request::Help { .. } => {
                reply(214, "2.0.0", "carteiro: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, NOOP, QUIT")
            }
            Request::Quit => return (reply(221, "2.0.0", "bye"), Next::Close),
            other => reply(502, "5.5.1", &format!("{} is not offered", other.name())),
        };
        (answer, Next::Continue)
    }

    /// AUTH is offered over TLS, and without it only on loopback when the operator allows.
    fn may_log_in(&self) -> bool {
        self.tls || (self.shared.allow_plain_auth_on_loopback && self.peer.ip().is_loopback())
    }

    fn ehlo(&self, host: &str) -> String {
        let mut lines = vec![
            format!("{} greets {host}", self.shared.state.delivery.hostname),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.shared.state.delivery.max_message_bytes),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if self.may_log_in() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }
        let last = lines.len() - 1;
        lines.iter().enumerate().map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' })).collect()
    }

    async fn auth(&mut self, mechanism: u64, initial: &str, reading: &mut Reading) -> (String, Next) {
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                *reading = Reading::Auth(AuthStep::PlainResponse);
                ("334 \r\n".to_owned(), Next::Continue)
            }
            AUTH_PLAIN => self.auth_step(AuthStep::PlainResponse, initial, reading).await,
            AUTH_LOGIN if initial.is_empty() => {
                *reading = Reading::Auth(AuthStep::LoginUser);
                ("334 VXNlcm5hbWU6\r\n".to_owned(), Next::Continue)
            }
            AUTH_LOGIN => self.auth_step(AuthStep::LoginUser, initial, reading).await,
            _ => (reply(504, "5.5.4", "only PLAIN and LOGIN are offered"), Next::Continue),
        }
    }

    async fn auth_step(&mut self, step: AuthStep, answer: &str, reading: &mut Reading) -> (String, Next) {
        if answer == "*" {
            return (reply(501, "5.7.0", "login cancelled"), Next::Continue);
        }
        let Ok(decoded) = STANDARD.decode(answer) else {
            return (reply(501, "5.5.2", "the answer is not base64"), Next::Continue);
        };
        let password = match step {
            AuthStep::LoginUser => {
                *reading = Reading::Auth(AuthStep::LoginPassword);
                return ("334 UGFzc3dvcmQ6\r\n".to_owned(), Next::Continue);
            }
            AuthStep::LoginPassword => decoded,
            // authzid NUL authcid NUL password
            AuthStep::PlainResponse => decoded.split(|b| *b == 0).nth(2).map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let key = String::from_utf8_lossy(&password);
        match auth::company_by_api_key(&self.shared.state, key.trim()).await {
            Ok(Some(company)) => {
                self.company = Some(company);
                (reply(235, "2.7.0", "logged in"), Next::Continue)
            }
            Ok(None) => {
                self.auth_failures += 1;
                let answer = reply(535, "5.7.8", "the password is not a valid API key of any company");
                let next = if self.auth_failures >= MAX_AUTH_FAILURES { Next::Close } else { Next::Continue };
                (answer, next)
            }
            Err(_) => (reply(454, "4.7.0", "cannot check the key right now; try again later"), Next::Continue),
        }
    }

    /// The message after its final dot: submitted as the API would, or refused in words.
    async fn message(&mut self, body: Vec<u8>, too_big: bool) -> String {
        let recipients = std::mem::take(&mut self.recipients);
        self.mail_from = None;
        if too_big {
            let limit = self.shared.state.delivery.max_message_bytes;
            return reply(552, "5.3.4", &format!("the message is over the limit of {limit} bytes"));
        }
        let Some(company) = self.company.clone() else {
            return reply(530, "5.7.0", "log in first");
        };
        let state = &self.shared.state;
        let default_sender = match settings::resolved(state, &company, None).await {
            Ok(resolved) => {
                resolved.effective.policy.default_sender_address.value.as_ref().map(|a| a.as_str().to_owned())
            }
            Err(e) => return temporary(&e),
        };
        let document = match super::message::document(&body, &recipients, default_sender.as_deref()) {
            Ok(document) => document,
            Err(why) => return reply(550, "5.6.0", &why),
        };
        match submit::submit_one(state, &company, &document).await {
            Ok(accepted) => {
                tracing::info!(message_id = %accepted.id, company = %company, recipients = %crate::telemetry::mask_addresses(&recipients.join(", ")), "accepted over SMTP");
                reply(250, "2.0.0", &format!("queued as {}", accepted.id))
            }
            Err(ServiceError::Invalid(errors)) => {
                let why = errors.0.first().map(|e| e.message.clone()).unwrap_or_default();
                reply(550, "5.6.0", &format!("the message is refused: {}", one_line(&why)))
            }
            Err(e) => temporary(&e),
        }
    }
}

/// A refusal the client should try again later: carteiro's settings or database.
fn temporary(error: &ServiceError) -> String {
    match error {
        ServiceError::Unprocessable { message, .. } => reply(451, "4.3.5", &one_line(message)),
        ServiceError::Full(_) => reply(452, "4.3.1", "carteiro's disk is full; try again later"),
        ServiceError::Internal(e) => {
            tracing::error!(error = format!("{e:#}"), "cannot take a message over SMTP");
            reply(451, "4.3.0", "carteiro cannot take the message right now; try again later")
        }
        other => reply(451, "4.3.0", &format!("{}; try again later", one_line(&other.to_string()))),
    }
}

fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\r', '\n']) { Cow::Owned(text.replace(['\r', '\n'], " ")) } else { Cow::Borrowed(text) }
}

/// A request smtp-proto could not read, answered in words.
fn refusal(error: &ParseError) -> String {
    match error {
        ParseError::UnknownCommand => reply(500, "5.5.1", "unknown command"),
        ParseError::InvalidSenderAddress => reply(501, "5.1.7", "the sender address is not valid"),
        ParseError::InvalidRecipientAddress => reply(501, "5.1.3", "the recipient address is not valid"),
        ParseError::SyntaxError { syntax } => reply(501, "5.5.4", &format!("syntax: {syntax}")),
        ParseError::InvalidParameter { param } => reply(501, "5.5.4", &format!("the parameter {param} is not valid")),
        ParseError::UnsupportedParameter { param } => {
            reply(504, "5.5.4", &format!("the parameter {param} is not offered"))
        }
        ParseError::ResponseTooLong => reply(500, "5.5.6", "the line is too long"),
        _ => reply(500, "5.5.2", "the command cannot be read"),
    }
}
