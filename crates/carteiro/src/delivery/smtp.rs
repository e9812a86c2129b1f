//! One SMTP session: connect (directly or through a proxy), TLS, EHLO, AUTH, then transactions. Every
//! step is timed and recorded, so that delivery attempts and Test connection
//! tell the same story. `timeout_s` bounds the connect and every command,
//! including the greeting read, which the SMTP client library leaves unbounded.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use carteiro_core::Secret;
use carteiro_core::delivery::{Failure, Reply, ReplyClass, Stage, Transaction};
use carteiro_core::settings::{Credential, Login, PasswordMechanism, Proxy, Security, SmtpServer};
use mail_send::{Credentials, SmtpClient};
use rustls::pki_types::ServerName;
use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, AUTH_XOAUTH2, EXT_PIPELINING, EXT_START_TLS, EhloResponse, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::tls::TlsConfigs;
use super::transcript::{Transcript, within};
use super::{Means, Outgoing, Stop, connect, stopping, transfer_time};

/// How long to wait for the answer to QUIT: only politeness depends on it.
const QUIT_WAIT: Duration = Duration::from_secs(5);

pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}
type Stream = Box<dyn AsyncStream>;

fn reply_of(response: &Response<String>) -> Reply {
    let [a, b, c] = response.esc;
    let text = if a == 0 { response.message.clone() } else { format!("{a}.{b}.{c} {}", response.message) };
    Reply::new(response.code, text)
}

/// Turns a client error at `stage` into a failure that says what happened.
fn failure(stage: Stage, error: mail_send::Error) -> Failure {
    use mail_send::Error as E;
    match error {
        E::Io(e) => Failure::Network { stage, detail: e.to_string() },
        E::Tls(e) => Failure::Tls { detail: e.to_string() },
        E::InvalidTLSName => Failure::Tls { detail: "the server name is not valid for TLS".to_owned() },
        E::UnparseableReply => Failure::Network {
            stage,
            detail: "the server closed the connection or sent an unreadable reply".to_owned(),
        },
        E::UnexpectedReply(r) | E::AuthenticationFailed(r) => Failure::Reply { stage, reply: reply_of(&r) },
        E::Timeout => Failure::Timeout { stage },
        E::UnsupportedAuthMechanism => Failure::Unsupported {
            stage,
            detail: "the server offers none of the authentication mechanisms allowed by the settings".to_owned(),
        },
        E::MissingStartTls => Failure::Unsupported { stage, detail: "the server does not offer STARTTLS".to_owned() },
        other => Failure::Network { stage, detail: other.to_string() },
    }
}

/// An open, authenticated session.
pub struct Session {
    client: SmtpClient<Stream>,
    /// The server offers PIPELINING: the envelope goes in one write.
    pipelining: bool,
    /// Client and server are in step: every command sent has had its reply
    /// read. Once not, the session carries nothing more.
    usable: bool,
}

impl Session {
    /// Opens a session with `server`, each command bounded by `timeout`, recording each step in `log`.
    pub async fn open(
        server: &SmtpServer,
        timeout: Duration,
        means: &Means<'_>,
        log: &mut Transcript,
    ) -> Result<Self, Failure> {
        let tcp = connect::reach(server, timeout, log).await?;
        let mut stream: Stream = Box::new(tcp);
        if server.security == Security::Tls {
            stream = handshake(stream, server, means.tls, timeout, log).await?;
        }
        let mut client = SmtpClient { stream, timeout };

        let started = Instant::now();
        let greeting = within(timeout, Stage::Greeting, async {
            let reply = client.read().await.map_err(|e| failure(Stage::Greeting, e))?;
            match reply.code {
                220 => Ok(reply_of(&reply)),
                _ => Err(Failure::Reply { stage: Stage::Greeting, reply: reply_of(&reply) }),
            }
        })
        .await;
        log.record(Stage::Greeting, started, &greeting, ToString::to_string);
        greeting?;

        let mut ehlo = say_ehlo(&mut client, means.hostname, log).await?;

        if server.security == Security::StartTls {
            let started = Instant::now();
            let ready = if ehlo.has_capability(EXT_START_TLS) {
                client.cmd(b"STARTTLS\r\n").await.map_err(|e| failure(Stage::StartTls, e)).and_then(|r| match r.code {
                    220 => Ok(reply_of(&r)),
                    _ => Err(Failure::Reply { stage: Stage::StartTls, reply: reply_of(&r) }),
                })
            } else {
                Err(Failure::Unsupported {
                    stage: Stage::StartTls,
                    detail: "the server does not offer STARTTLS".to_owned(),
                })
            };
            log.record(Stage::StartTls, started, &ready, ToString::to_string);
            ready?;
            client.stream = handshake(client.stream, server, means.tls, timeout, log).await?;
            // The capabilities before TLS no longer hold (RFC 3207 §4.2).
            ehlo = say_ehlo(&mut client, means.hostname, log).await?;
        }

        if let Some(login) = &server.login {
            log_in(&mut client, login, server.proxy.as_ref(), &ehlo, timeout, means, log).await?;
        }
        Ok(Self { client, pipelining: ehlo.has_capability(EXT_PIPELINING), usable: true })
    }

    /// Sends several messages over this session, each its own transaction.
    /// With PIPELINING, each message's envelope travels with the previous
    /// message's end of data (RFC 2920 §3.1), so a message costs one round
    /// trip. Stops after a failure that leaves the session unusable, or when
    /// `stop` asks: there are as many results as messages tried, and a message
    /// whose end of data went out without an answer is in doubt (a temporary
    /// failure), never untried.
    pub async fn send_all(&mut self, outgoing: &[Outgoing<'_>], stop: &Stop) -> Vec<Result<Transaction, Failure>> {
        if self.pipelining {
            return self.send_pipelined(outgoing, stop).await;
        }
        let mut results = Vec::with_capacity(outgoing.len());
        for (i, o) in outgoing.iter().enumerate() {
            // The messages were marked as being sent: the first goes whatever happens.
            if i > 0 && stop.soft.is_cancelled() {
                break;
            }
            let mut log = Transcript::default();
            let result = tokio::select! {
                result = self.send(o.envelope_from, &o.to, o.raw, &mut log) => result,
                () = stop.hard.cancelled() => {
                    self.usable = false;
                    Err(stopping(Stage::DataEnd))
                }
            };
            results.push(result);
            if !self.usable {
                break;
            }
        }
        results
    }

    /// Whether the session can carry another message.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    async fn send_pipelined(&mut self, outgoing: &[Outgoing<'_>], stop: &Stop) -> Vec<Result<Transaction, Failure>> {
        let mut results = Vec::with_capacity(outgoing.len());
        let Some(first) = outgoing.first() else { return results };
        let lines = envelope_lines(first).concat();
        let limit = self.client.timeout;
        if let Err(failure) = self.write(None, &lines, Stage::MailFrom).await {
            self.usable = false;
            results.push(Err(failure));
            return results;
        }
        let (mut replies, mut broke) =
            self.read_replies(envelope_lines(first).len(), limit, Stage::MailFrom, stop).await;
        for (i, o) in outgoing.iter().enumerate() {
            // The replies to this message's envelope: all of them, or the session broke.
            if let Some(failure) = broke.take() {
                // Its data never went out. The first message of a session counts the failure
                // (so that a server that always fails is retried on the schedule); a later one
                // is given back untried.
                self.usable = false;
                if i == 0 {
                    results.push(Err(failure));
                }
                break;
            }
            let (mail, rcpt, go) = split_envelope(std::mem::take(&mut replies), o.to.len());
            let closing = mail.as_ref().err().and_then(Failure::reply).is_some_and(|r| r.code == 421)
                || rcpt.iter().any(|r| r.as_ref().is_err_and(|r| r.code == 421))
                || go.as_ref().is_some_and(|g| g.code == 421);
            let accepted = mail.is_ok() && rcpt.iter().any(Result::is_ok);
            let ready = go.as_ref().is_some_and(|g| g.code == 354);
            // After a 354 the data must end, even with nobody to send to (then empty).
            let data: Option<&[u8]> = ready.then_some(if accepted { o.raw } else { &[] });
            let reset = !(accepted && ready) && !closing;
            let next = outgoing.get(i + 1).filter(|_| !closing && !stop.soft.is_cancelled()).map(envelope_lines);
            let mut lines = if reset { "RSET\r\n".to_owned() } else { String::new() };
            lines.push_str(&next.clone().unwrap_or_default().concat());
            let stage = if data.is_some() { Stage::DataEnd } else { Stage::MailFrom };
            let expected = usize::from(data.is_some()) + usize::from(reset) + next.as_ref().map_or(0, Vec::len);
            let limit = limit + transfer_time(data.map_or(0, <[u8]>::len));
            let (mut got, failure) = match self.write(data, &lines, stage).await {
                Ok(()) => self.read_replies(expected, limit, stage, stop).await,
                Err(failure) => (Vec::new(), Some(failure)),
            };
            let end = if data.is_some() && !got.is_empty() { Some(got.remove(0)) } else { None };
            let result = match (mail, data.is_some()) {
                (Err(refused), _) => Err(refused),
                (Ok(_), _) if !rcpt.iter().any(Result::is_ok) => Ok(Transaction { rcpt, data: None }),
                (Ok(_), false) => {
                    let go = go.unwrap_or_else(|| Reply::new(421, "no reply to DATA"));
                    Ok(Transaction { rcpt, data: Some(Err(Failure::Reply { stage: Stage::Data, reply: go })) })
                }
                (Ok(_), true) => {
                    let data = match end {
                        Some(end) if end.class() == ReplyClass::Positive => Ok(end),
                        Some(end) => Err(Failure::Reply { stage: Stage::DataEnd, reply: end }),
                        // The data went out and no answer came back: in doubt.
                        None => Err(failure.clone().unwrap_or_else(|| Failure::Network {
                            stage: Stage::DataEnd,
                            detail: "no reply after the message".to_owned(),
                        })),
                    };
                    Ok(Transaction { rcpt, data: Some(data) })
                }
            };
            // A failed read leaves replies owed to what was written: out of step.
            self.usable &= !(breaks_session(&result) || closing || failure.is_some());
            results.push(result);
            if !self.usable || next.is_none() {
                break;
            }
            if reset && !got.is_empty() {
                got.remove(0);
            }
            replies = got;
            broke = failure;
        }
        results
    }

    /// Writes the end of a message's data when there is one (the body,
    /// dot-stuffed, then the final dot), then command lines.
    async fn write(&mut self, data: Option<&[u8]>, lines: &str, stage: Stage) -> Result<(), Failure> {
        let client = &mut self.client;
        let limit = client.timeout + transfer_time(data.map_or(0, <[u8]>::len));
        tokio::time::timeout(limit, async {
            if let Some(data) = data {
                client.write_message(without_final_crlf(data)).await.map_err(|e| failure(stage, e.into()))?;
            }
            client.stream.write_all(lines.as_bytes()).await.map_err(|e| failure(stage, e.into()))?;
            client.stream.flush().await.map_err(|e| failure(stage, e.into()))
        })
        .await
        .unwrap_or(Err(Failure::Timeout { stage }))
    }

    /// Reads up to `expected` replies within `limit`; the replies read before
    /// any failure are kept (a pipelined group's early answers still count).
    async fn read_replies(
        &mut self,
        expected: usize,
        limit: Duration,
        stage: Stage,
        stop: &Stop,
    ) -> (Vec<Reply>, Option<Failure>) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut replies = Vec::with_capacity(expected);
        let mut parser = ResponseReceiver::default();
        let mut buf = [0u8; 4096];
        while replies.len() < expected {
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, self.client.stream.read(&mut buf)) => read,
                () = stop.hard.cancelled() => return (replies, Some(stopping(stage))),
            };
            let n = match read {
                Err(_) => return (replies, Some(Failure::Timeout { stage })),
                Ok(Err(e)) => return (replies, Some(Failure::Network { stage, detail: e.to_string() })),
                Ok(Ok(0)) => {
                    let detail = "the server closed the connection".to_owned();
                    return (replies, Some(Failure::Network { stage, detail }));
                }
                Ok(Ok(n)) => n,
            };
            let mut bytes = buf[..n].iter();
            while replies.len() < expected {
                match parser.parse(&mut bytes) {
                    Ok(reply) => {
                        replies.push(reply_of(&reply));
                        parser.reset();
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                    Err(_) => {
                        let detail = "the server sent an unreadable reply".to_owned();
                        return (replies, Some(Failure::Network { stage, detail }));
                    }
                }
            }
        }
        (replies, None)
    }

    /// Runs one transaction: MAIL FROM, RCPT TO for each recipient (a refused
    /// one does not stop the others), DATA when any was accepted. With
    /// PIPELINING (RFC 2920) the envelope and DATA go in one write and their
    /// replies come back together; otherwise one command at a time. A failed
    /// transaction is reset, so the session can carry the next message.
    pub async fn send(
        &mut self,
        envelope_from: &str,
        recipients: &[&str],
        raw: &[u8],
        log: &mut Transcript,
    ) -> Result<Transaction, Failure> {
        let result = self.transact(envelope_from, recipients, raw, log).await;
        self.usable &= !breaks_session(&result);
        result
    }

    async fn transact(
        &mut self,
        envelope_from: &str,
        recipients: &[&str],
        raw: &[u8],
        log: &mut Transcript,
    ) -> Result<Transaction, Failure> {
        let started = Instant::now();
        let mut lines = vec![format!("MAIL FROM:<{envelope_from}>\r\n")];
        lines.extend(recipients.iter().map(|to| format!("RCPT TO:<{to}>\r\n")));
        let mut replies = if self.pipelining {
            lines.push("DATA\r\n".to_owned());
            let replies = self.client.cmds(&lines).await.map_err(|e| failure(Stage::MailFrom, e))?;
            replies.iter().map(reply_of).collect()
        } else {
            self.envelope_one_by_one(&lines).await?
        }
        .into_iter();

        let mail = match replies.next() {
            Some(reply) if reply.class() == ReplyClass::Positive => Ok(reply),
            Some(reply) => Err(Failure::Reply { stage: Stage::MailFrom, reply }),
            None => Err(Failure::Network { stage: Stage::MailFrom, detail: "no reply to MAIL FROM".to_owned() }),
        };
        log.record(Stage::MailFrom, started, &mail, |r| format!("sender <{envelope_from}>: {r}"));
        if let Err(refused) = mail {
            self.abandon(replies.last()).await;
            return Err(refused);
        }

        let mut rcpt = Vec::with_capacity(recipients.len());
        for to in recipients {
            let reply = replies.next().unwrap_or_else(|| Reply::new(421, "no reply to RCPT TO"));
            let positive = reply.class() == ReplyClass::Positive;
            let logged = if positive {
                Ok(reply.clone())
            } else {
                Err(Failure::Reply { stage: Stage::RcptTo, reply: reply.clone() })
            };
            log.record(Stage::RcptTo, started, &logged, |r| format!("<{to}>: {r}"));
            rcpt.push(if positive { Ok(reply) } else { Err(reply) });
        }
        let pipelined_go = replies.next();

        if rcpt.iter().all(Result::is_err) {
            // Nobody to send to: end the transaction so the session stays usable.
            self.abandon(pipelined_go).await;
            return Ok(Transaction { rcpt, data: None });
        }
        let started = Instant::now();
        let data = self.data(pipelined_go, raw).await;
        log.record(Stage::Data, started, &data, |r| format!("message accepted: {r}"));
        if matches!(&data, Err(Failure::Reply { stage: Stage::Data, .. })) {
            // DATA refused: the transaction is still open on the server's side.
            self.reset().await;
        }
        Ok(Transaction { rcpt, data: Some(data) })
    }

    /// MAIL FROM and each RCPT TO in turn; no RCPT after a refused MAIL.
    async fn envelope_one_by_one(&mut self, lines: &[String]) -> Result<Vec<Reply>, Failure> {
        let mut replies = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let stage = if i == 0 { Stage::MailFrom } else { Stage::RcptTo };
            let reply = reply_of(&self.client.cmd(line.as_bytes()).await.map_err(|e| failure(stage, e))?);
            let refused_sender = i == 0 && reply.class() != ReplyClass::Positive;
            replies.push(reply);
            if refused_sender {
                break;
            }
        }
        Ok(replies)
    }

    /// Ends a transaction that will carry no message. A server that said 354
    /// to a pipelined DATA anyway gets an empty message's end first.
    async fn abandon(&mut self, pipelined_go: Option<Reply>) {
        if pipelined_go.is_some_and(|go| go.code == 354) && self.client.cmd(b".\r\n").await.is_err() {
            self.usable = false;
            return;
        }
        self.reset().await;
    }

    /// RSET; a session whose RSET went unanswered is out of step.
    async fn reset(&mut self) {
        if self.client.rset().await.is_err() {
            self.usable = false;
        }
    }

    /// DATA (unless already answered in a pipelined group), then the message and its final reply.
    async fn data(&mut self, pipelined_go: Option<Reply>, raw: &[u8]) -> Result<Reply, Failure> {
        let go = match pipelined_go {
            Some(go) => go,
            None => reply_of(&self.client.cmd(b"DATA\r\n").await.map_err(|e| failure(Stage::Data, e))?),
        };
        if go.code != 354 {
            return Err(Failure::Reply { stage: Stage::Data, reply: go });
        }
        let client = &mut self.client;
        let end = tokio::time::timeout(client.timeout + transfer_time(raw.len()), async {
            client.write_message(without_final_crlf(raw)).await?;
            client.read().await
        })
        .await
        .map_err(|_| Failure::Timeout { stage: Stage::DataEnd })?
        .map_err(|e| failure(Stage::DataEnd, e))?;
        let reply = reply_of(&end);
        match end.is_positive_completion() {
            true => Ok(reply),
            false => Err(Failure::Reply { stage: Stage::DataEnd, reply }),
        }
    }

    /// Ends the session: QUIT (bounded) when the connection is still in step,
    /// else just drop it: after a timeout or a broken connection, waiting for
    /// another answer only holds the slot.
    pub async fn close(mut self) {
        if self.usable {
            let _ = tokio::time::timeout(QUIT_WAIT, self.client.cmd(b"QUIT\r\n")).await;
        }
    }
}

/// Logs in as `login` says, recording the token step (XOAUTH2, its endpoint
/// reached through `proxy` when there is one) and the AUTH step.
async fn log_in(
    client: &mut SmtpClient<Stream>,
    login: &Login,
    proxy: Option<&Proxy>,
    ehlo: &EhloResponse<String>,
    timeout: Duration,
    means: &Means<'_>,
    log: &mut Transcript,
) -> Result<(), Failure> {
    let user = login.username.as_str();
    let auth = match &login.credential {
        Credential::Password { password, mechanism } => {
            let started = Instant::now();
            (started, authenticate(client, user, password, *mechanism, ehlo).await)
        }
        Credential::OAuth(oauth) => {
            let started = Instant::now();
            let bearer = means.tokens.token(oauth, proxy, timeout).await;
            log.record(Stage::Token, started, &bearer, |b| b.source.clone());
            let token = bearer?.token;
            let started = Instant::now();
            let auth = xoauth2(client, user, &token, ehlo).await;
            if matches!(auth, Err(Failure::Reply { .. })) {
                // A refused token is not taken from the cache again.
                means.tokens.forget(oauth, &token).await;
            }
            (started, auth)
        }
    };
    let (started, auth) = auth;
    log.record(Stage::Auth, started, &auth, |reply| format!("logged in as {user}: {reply}"));
    auth.map(drop)
}

/// AUTH PLAIN (preferred) or LOGIN, as the settings allow and the server
/// offers, keeping the server's final reply for the record. The client
/// library's own `authenticate` answers only yes or no.
async fn authenticate(
    client: &mut SmtpClient<Stream>,
    username: &str,
    password: &Secret,
    mechanism: PasswordMechanism,
    ehlo: &EhloResponse<String>,
) -> Result<Reply, Failure> {
    let allowed = match mechanism {
        PasswordMechanism::Auto => AUTH_PLAIN | AUTH_LOGIN,
        PasswordMechanism::Plain => AUTH_PLAIN,
        PasswordMechanism::Login => AUTH_LOGIN,
    };
    let offered = allowed & ehlo.auth_mechanisms;
    let mechanism = [AUTH_PLAIN, AUTH_LOGIN].into_iter().find(|m| offered & m != 0).ok_or_else(not_offered)?;
    let credentials = Credentials::new(username, password.expose());
    let encode = |challenge: &str| credentials.encode(mechanism, challenge).map_err(|e| failure(Stage::Auth, e));
    let first =
        if mechanism == AUTH_PLAIN { format!("AUTH PLAIN {}\r\n", encode("")?) } else { "AUTH LOGIN\r\n".to_owned() };
    let mut reply = client.cmd(first.as_bytes()).await.map_err(|e| failure(Stage::Auth, e))?;
    // LOGIN asks for the user name, then the password: two challenges at most.
    for _ in 0..2 {
        if reply.code != 334 {
            break;
        }
        let answer = format!("{}\r\n", encode(&reply.message)?);
        reply = client.cmd(answer.as_bytes()).await.map_err(|e| failure(Stage::Auth, e))?;
    }
    match reply.code {
        235 => Ok(reply_of(&reply)),
        _ => Err(Failure::Reply { stage: Stage::Auth, reply: reply_of(&reply) }),
    }
}

/// AUTH XOAUTH2 with a bearer token. A refused token gets a 334 whose text
/// is the provider's reason (base64 JSON); the client answers with an empty
/// line and the server then sends its final refusal, which carries the reason.
async fn xoauth2(
    client: &mut SmtpClient<Stream>,
    username: &str,
    token: &Secret,
    ehlo: &EhloResponse<String>,
) -> Result<Reply, Failure> {
    if ehlo.auth_mechanisms & AUTH_XOAUTH2 == 0 {
        return Err(not_offered());
    }
    let credentials = Credentials::new_xoauth2(username, token.expose());
    let encoded = credentials.encode(AUTH_XOAUTH2, "").map_err(|e| failure(Stage::Auth, e))?;
    let reply =
        client.cmd(format!("AUTH XOAUTH2 {encoded}\r\n").as_bytes()).await.map_err(|e| failure(Stage::Auth, e))?;
    if reply.code == 235 {
        return Ok(reply_of(&reply));
    }
    let (reply, reason) = match reply.code {
        334 => {
            let reason = BASE64.decode(reply.message.trim()).ok().and_then(|json| String::from_utf8(json).ok());
            let last = client.cmd(b"\r\n").await.map_err(|e| failure(Stage::Auth, e))?;
            (reply_of(&last), reason)
        }
        _ => (reply_of(&reply), None),
    };
    let reply = match reason {
        Some(reason) => Reply::new(reply.code, format!("{} (the provider says: {})", reply.text, reason.trim())),
        None => reply,
    };
    Err(Failure::Reply { stage: Stage::Auth, reply })
}

fn not_offered() -> Failure {
    Failure::Unsupported {
        stage: Stage::Auth,
        detail: "the server offers none of the authentication mechanisms allowed by the settings".to_owned(),
    }
}

fn envelope_lines(o: &Outgoing<'_>) -> Vec<String> {
    let mut lines = vec![format!("MAIL FROM:<{}>\r\n", o.envelope_from)];
    lines.extend(o.to.iter().map(|to| format!("RCPT TO:<{to}>\r\n")));
    lines.push("DATA\r\n".to_owned());
    lines
}

/// The replies to a pipelined envelope: MAIL, each RCPT, then DATA's go-ahead.
fn split_envelope(
    replies: Vec<Reply>,
    recipients: usize,
) -> (Result<Reply, Failure>, Vec<Result<Reply, Reply>>, Option<Reply>) {
    let mut replies = replies.into_iter();
    let mail = match replies.next() {
        Some(r) if r.class() == ReplyClass::Positive => Ok(r),
        Some(reply) => Err(Failure::Reply { stage: Stage::MailFrom, reply }),
        None => Err(Failure::Network { stage: Stage::MailFrom, detail: "no reply to MAIL FROM".to_owned() }),
    };
    let rcpt = (0..recipients)
        .map(|_| {
            let r = replies.next().unwrap_or_else(|| Reply::new(421, "no reply to RCPT TO"));
            if r.class() == ReplyClass::Positive { Ok(r) } else { Err(r) }
        })
        .collect();
    (mail, rcpt, replies.next())
}

/// After a timeout, a broken connection or a 421 (the server closing the
/// channel) a session cannot carry another message.
pub fn breaks_session(outcome: &Result<Transaction, Failure>) -> bool {
    let closing = |r: &Reply| r.code == 421;
    let lost =
        |f: &Failure| matches!(f, Failure::Timeout { .. } | Failure::Network { .. }) || f.reply().is_some_and(closing);
    match outcome {
        Err(f) | Ok(Transaction { data: Some(Err(f)), .. }) => lost(f),
        Ok(t) => t.rcpt.iter().any(|r| r.as_ref().is_err_and(closing)),
    }
}

/// The TLS handshake, verifying the server as the settings say; any problem
/// (a CA that does not load, a name TLS cannot use) is this step's failure.
async fn handshake(
    stream: Stream,
    server: &SmtpServer,
    tls: &TlsConfigs,
    timeout: Duration,
    log: &mut Transcript,
) -> Result<Stream, Failure> {
    let started = Instant::now();
    let result = async {
        let connector = tls
            .connector(server.tls_verify, server.tls_ca_pem.as_deref())
            .map_err(|detail| Failure::Tls { detail: format!("the extra CA cannot be used: {detail}") })?;
        let name = ServerName::try_from(server.host.as_str().to_owned())
            .map_err(|_| Failure::Tls { detail: format!("{} is not a valid TLS server name", server.host) })?;
        within(timeout, Stage::Tls, async {
            connector.connect(name, stream).await.map_err(|e| Failure::Tls { detail: e.to_string() })
        })
        .await
    }
    .await;
    log.record(Stage::Tls, started, &result, |s| {
        let (_, conn) = s.get_ref();
        format!(
            "{} {}",
            conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
            conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default()
        )
    });
    Ok(Box::new(result?))
}

async fn say_ehlo(
    client: &mut SmtpClient<Stream>,
    hostname: &str,
    log: &mut Transcript,
) -> Result<EhloResponse<String>, Failure> {
    let started = Instant::now();
    let ehlo = client.ehlo(hostname).await.map_err(|e| failure(Stage::Ehlo, e));
    log.record(Stage::Ehlo, started, &ehlo, |e| {
        let mut offers = Vec::new();
        if e.has_capability(EXT_START_TLS) {
            offers.push("STARTTLS".to_owned());
        }
        let mut mechanisms = Vec::new();
        if e.auth_mechanisms & AUTH_PLAIN != 0 {
            mechanisms.push("PLAIN");
        }
        if e.auth_mechanisms & AUTH_LOGIN != 0 {
            mechanisms.push("LOGIN");
        }
        if e.auth_mechanisms & AUTH_XOAUTH2 != 0 {
            mechanisms.push("XOAUTH2");
        }
        if !mechanisms.is_empty() {
            offers.push(format!("AUTH {}", mechanisms.join(" ")));
        }
        if e.size > 0 {
            offers.push(format!("SIZE {}", e.size));
        }
        format!(
            "{} greets us; offers: {}",
            e.hostname,
            if offers.is_empty() { "nothing notable".to_owned() } else { offers.join(", ") }
        )
    });
    ehlo
}

/// mail-send ends the data with CRLF "." CRLF, whose first CRLF ends the
/// message's last line: a message that already ends with CRLF would gain an
/// empty line on the wire (and an extra line break in a single-part body).
fn without_final_crlf(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r\n").unwrap_or(raw)
}
