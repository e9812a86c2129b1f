//! Test connection (SPEC §4): open a session with the settings on screen
//! (saved or not), send a test e-mail as a `system` message, and report every
//! step with its timing, the server's replies and, on failure, the likely fix.

use carteiro_core::address::EmailAddress;
use carteiro_core::delivery::{Failure, Stage};
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::message::{Kind, NewMessage};
use carteiro_core::sender::{self, SenderContext};
use carteiro_core::settings::{Connection, Level, Scope, Security, SettingsDoc, Transport};
use carteiro_core::{FieldError, FieldErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, ServiceResult, settings, tenants};
use crate::delivery::mime;
use crate::delivery::transcript::{Step, Transcript};
use crate::delivery::{Carrier, Outgoing};
use crate::i18n::Lang;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestConnectionIn {
    pub company: Option<String>,
    pub user: Option<String>,
    /// Unsaved settings of the most specific level named (global when none):
    /// tested as they would be in force, a blank password meaning the stored one.
    pub settings: Option<SettingsDoc>,
    /// Who receives the test message.
    #[schema(example = "ana@acme.example")]
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestConnectionOut {
    pub ok: bool,
    pub steps: Vec<Step>,
    /// On failure: what is probably wrong and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub hint: Option<Hint>,
}

/// The level a test names, parsed from the request.
pub struct TestTarget {
    pub company: Option<CompanySlug>,
    pub user: Option<UserRef>,
    pub to: EmailAddress,
}

impl TestConnectionIn {
    pub fn target(&self) -> Result<TestTarget, FieldErrors> {
        let mut errors = FieldErrors::default();
        let company = self.company.as_deref().and_then(|c| errors.check(CompanySlug::parse("company", c)));
        let user = self.user.as_deref().and_then(|u| errors.check(UserRef::parse("user", u)));
        if self.user.is_some() && self.company.is_none() {
            errors.push(FieldError::new("user", "user needs company: a user level belongs to a company"));
        }
        let to = errors.check(EmailAddress::parse("to", &self.to));
        match to {
            Some(to) if errors.is_empty() => Ok(TestTarget { company, user, to }),
            _ => Err(errors),
        }
    }
}

/// Tests the levels of `target` as stored, or with `unsaved` in place of the
/// most specific one; `actor` may test unsaved values that act on the
/// carteiro host only when it may save them ([`settings::check_host_reach`]).
pub async fn run(
    state: &AppState,
    actor: &Actor,
    target: &TestTarget,
    unsaved: Option<&SettingsDoc>,
) -> ServiceResult<TestConnectionOut> {
    let company = match &target.company {
        Some(slug) => Some(tenants::company(state, slug).await?),
        None => None,
    };
    let mut levels = settings::levels_for(state, target.company.as_ref(), target.user.as_ref()).await?;
    if let Some(doc) = unsaved {
        let (scope, slot) = match (&target.company, &target.user) {
            (Some(c), Some(u)) => (Scope::User(c.clone(), u.clone()), 2),
            (Some(c), None) => (Scope::Company(c.clone()), 1),
            _ => (Scope::Global, 0),
        };
        let stored = settings::load_level(state, &scope).await?;
        let level = Level::parse(doc, stored.as_ref())?;
        settings::check_host_reach(actor, &level, stored.as_ref())?;
        levels[slot] = Some(level);
    }
    let effective = settings::resolve(&levels);
    let Some(connection) = effective.connection() else {
        return Ok(failed_before_connecting(
            "settings",
            "no connection is configured for this level: fill in the server, or enable specific e-mail sending",
        ));
    };

    let company_mailbox = company.as_ref().and_then(tenants::Company::mailbox);
    let ctx = SenderContext {
        policy: &effective.policy,
        company: company_mailbox.as_ref(),
        login_username: connection.login_username(),
    };
    let resolved = match sender::resolve(&Kind::System, None, None, ctx) {
        Ok(resolved) => resolved,
        Err(e) => return Ok(failed_before_connecting("sender", &e.message)),
    };
    let message = test_message(target);
    let id = uuid::Uuid::now_v7().to_string();
    let raw = mime::build(
        &message,
        &resolved,
        &mime::message_id(&id, &state.delivery.hostname),
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );

    let mut log = Transcript::default();
    let result = async {
        let mut carrier = Carrier::open(&connection, &state.means(), &mut log).await?;
        let outgoing = Outgoing {
            id: &id,
            envelope_from: resolved.envelope_from.as_str(),
            to: vec![target.to.as_str()],
            raw: &raw,
        };
        let transaction = carrier.send(&outgoing, &mut log).await;
        carrier.close().await;
        let transaction = transaction?;
        match (transaction.rcpt.into_iter().next(), transaction.data) {
            (Some(Err(reply)), _) => Err(Failure::Reply { stage: Stage::RcptTo, reply }),
            (_, Some(Err(failure))) => Err(failure),
            _ => Ok(()),
        }
    }
    .await;
    Ok(TestConnectionOut {
        ok: result.is_ok(),
        steps: log.steps,
        hint: result.err().and_then(|f| hint(&f, &connection)),
    })
}

fn failed_before_connecting(step: &'static str, detail: &str) -> TestConnectionOut {
    TestConnectionOut { ok: false, steps: vec![Step { step, ok: false, ms: 0, detail: detail.to_owned() }], hint: None }
}

fn test_message(target: &TestTarget) -> NewMessage {
    let level = match (&target.company, &target.user) {
        (Some(c), Some(u)) => format!("user {u} of company {c}"),
        (Some(c), None) => format!("company {c}"),
        _ => "the global level".to_owned(),
    };
    NewMessage {
        kind: Kind::System,
        to: vec![carteiro_core::Mailbox::new(None, target.to.clone())],
        cc: Vec::new(),
        bcc: Vec::new(),
        subject: "carteiro: test message / mensagem de teste".to_owned(),
        text: Some(format!(
            "This message was sent by carteiro's Test connection for {level}: the settings work.\r\n\r\n\
             Esta mensagem foi enviada pelo Testar conexão do carteiro: as configurações funcionam.\r\n"
        )),
        html: None,
        from: None,
        reply_to: None,
        headers: Vec::new(),
        attachments: Vec::new(),
        send_at: None,
        idempotency_key: None,
        tags: Vec::new(),
    }
}

/// The likely cause of a failure and the change that fixes it, in words an
/// administrator understands, in each language of the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub en: String,
    pub pt_br: String,
}

impl Hint {
    fn new(en: impl Into<String>, pt_br: impl Into<String>) -> Self {
        Self { en: en.into(), pt_br: pt_br.into() }
    }

    pub fn text(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::PtBr => &self.pt_br,
        }
    }
}

/// The API speaks English.
impl Serialize for Hint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.en)
    }
}

pub fn hint(failure: &Failure, connection: &Connection) -> Option<Hint> {
    let server = match &connection.transport {
        Transport::Smtp(server) => server,
        Transport::Sendmail { .. } => return sendmail_hint(failure),
        Transport::Pickup { .. } => {
            return Some(Hint::new(
                "check that the pickup directory exists and that carteiro may write into it",
                "verifique se o diretório de coleta existe e se o carteiro pode gravar nele",
            ));
        }
        Transport::Capture => return None,
    };
    let (host, port) = (&server.host, server.port.get());
    let hint = match failure {
        Failure::Network { stage: Stage::Proxy, .. } | Failure::Timeout { stage: Stage::Proxy } => Hint::new(
            "the proxy cannot be reached: check its address and port, or that it runs",
            "o proxy não responde: confira o endereço e a porta dele, ou se ele está em execução",
        ),
        Failure::Refused { stage: Stage::Tunnel, detail } if detail.contains("user name") => Hint::new(
            "the proxy refused its login: check the proxy's user name and password",
            "o proxy recusou o login: confira o usuário e a senha do proxy",
        ),
        Failure::Refused { stage: Stage::Tunnel, .. } => Hint::new(
            format!(
                "the proxy would not open a tunnel to {host}:{port}: ask its administrator to allow that destination and port"
            ),
            format!(
                "o proxy não abriu um túnel até {host}:{port}: peça ao administrador dele que libere esse destino e porta"
            ),
        ),
        Failure::Settings { detail } if detail.contains("proxy") => Hint::new(
            "set the proxy's address in the settings, or fix the system's ALL_PROXY / HTTPS_PROXY variables",
            "informe o endereço do proxy nas configurações, ou corrija as variáveis ALL_PROXY / HTTPS_PROXY do sistema",
        ),
        Failure::Refused { stage: Stage::Token, detail } if detail.contains("invalid_grant") => Hint::new(
            "the refresh token was revoked or has expired: authorise carteiro again with the provider and save the new refresh token",
            "o refresh token foi revogado ou expirou: autorize o carteiro de novo no provedor e salve o novo refresh token",
        ),
        Failure::Refused { stage: Stage::Token, detail } if detail.contains("invalid_client") => Hint::new(
            "the provider does not accept this client id and secret: check them in the provider's console",
            "o provedor não aceita este client id e secret: confira-os no console do provedor",
        ),
        Failure::Refused { stage: Stage::Token, .. }
        | Failure::Network { stage: Stage::Token, .. }
        | Failure::Timeout { stage: Stage::Token } => Hint::new(
            "no token could be obtained from the token endpoint: check its address and the client's settings",
            "não foi possível obter um token do endpoint de tokens: confira o endereço dele e os dados do cliente",
        ),
        Failure::Reply { stage: Stage::Auth, .. } if server.login.as_ref().is_some_and(|l| l.password().is_none()) => {
            Hint::new(
                "the server refused the XOAUTH2 token: check that the user name is the account the token was issued for and that it has the SMTP scope",
                "o servidor recusou o token XOAUTH2: confira se o usuário é a conta para a qual o token foi emitido e se ele tem o escopo SMTP",
            )
        }
        Failure::Network { stage: Stage::Dns, .. } => Hint::new(
            format!("the host name {host} cannot be resolved: check its spelling and this machine's DNS"),
            format!("o nome {host} não foi resolvido: confira a grafia e o DNS desta máquina"),
        ),
        Failure::Network { stage: Stage::Connect, .. } => Hint::new(
            format!(
                "nothing accepts connections at {host}:{port}: check the host and the port, and that no firewall blocks them"
            ),
            format!(
                "nada aceita conexões em {host}:{port}: confira o servidor e a porta, e se nenhum firewall os bloqueia"
            ),
        ),
        Failure::Timeout { stage: Stage::Connect | Stage::Dns } => Hint::new(
            format!("{host}:{port} did not answer: a firewall may drop the connection, or the host is down"),
            format!(
                "{host}:{port} não respondeu: um firewall pode estar descartando a conexão, ou o servidor está fora do ar"
            ),
        ),
        Failure::Timeout { stage: Stage::Greeting } if server.security != Security::Tls => Hint::new(
            "the server accepted the connection but never greeted us: this port may expect TLS from the start (choose TLS-SSL, usually port 465)",
            "o servidor aceitou a conexão mas não enviou a saudação: esta porta pode exigir TLS desde o início (escolha TLS-SSL, normalmente porta 465)",
        ),
        Failure::Tls { detail } if server.security == Security::Tls && looks_like_plain_text(detail) => Hint::new(
            "this port expects STARTTLS; choose STARTTLS or port 465 (TLS-SSL)",
            "esta porta espera STARTTLS; escolha STARTTLS ou a porta 465 (TLS-SSL)",
        ),
        Failure::Timeout { stage: Stage::Tls | Stage::Greeting } if server.security == Security::Tls => Hint::new(
            "the TLS handshake got no answer: this port may expect STARTTLS; choose STARTTLS or port 465",
            "o handshake TLS não teve resposta: esta porta pode esperar STARTTLS; escolha STARTTLS ou a porta 465",
        ),
        Failure::Tls { detail } if detail.contains("certificate") || detail.contains("Certificate") => Hint::new(
            format!(
                "the server's certificate is not trusted for {host}: check the host name matches the certificate, or add the certificate authority in tls_ca_pem"
            ),
            format!(
                "o certificado do servidor não é confiável para {host}: confira se o nome do servidor confere com o certificado, ou inclua a autoridade certificadora em tls_ca_pem"
            ),
        ),
        Failure::Unsupported { stage: Stage::StartTls, .. } => Hint::new(
            "the server does not offer STARTTLS: choose TLS-SSL (usually port 465) or, inside a trusted network, no encryption",
            "o servidor não oferece STARTTLS: escolha TLS-SSL (normalmente porta 465) ou, dentro de uma rede confiável, sem criptografia",
        ),
        Failure::Reply { stage: Stage::Auth, reply } if reply.code == 535 || reply.code == 534 => Hint::new(
            "the server refused the user name or password; Gmail and Microsoft 365 need XOAUTH2 or an app password",
            "o servidor recusou o usuário ou a senha; Gmail e Microsoft 365 exigem XOAUTH2 ou uma senha de app",
        ),
        Failure::Unsupported { stage: Stage::Auth, .. } => Hint::new(
            "the server offers no login over this connection: many servers allow AUTH only after STARTTLS, or the chosen mechanism is not offered",
            "o servidor não oferece login nesta conexão: muitos servidores só aceitam AUTH depois do STARTTLS, ou o mecanismo escolhido não é oferecido",
        ),
        Failure::Reply { stage: Stage::MailFrom, .. } => Hint::new(
            "the server refused the sender address: it may only send as the authenticated account; set the default sender to that account",
            "o servidor recusou o remetente: ele pode só enviar como a conta autenticada; defina o remetente padrão com essa conta",
        ),
        Failure::Reply { stage: Stage::RcptTo, reply }
            if reply.code == 530 || reply.code == 550 && reply.text.contains("relay") =>
        {
            Hint::new(
                "the server refused to relay: enable authentication with an account allowed to send",
                "o servidor recusou o repasse (relay): habilite a autenticação com uma conta autorizada a enviar",
            )
        }
        Failure::Reply { stage: Stage::RcptTo, .. } => Hint::new(
            "the server refused the test address: check it, or try another one",
            "o servidor recusou o endereço de teste: confira-o, ou tente outro",
        ),
        _ => return None,
    };
    Some(hint)
}

fn sendmail_hint(failure: &Failure) -> Option<Hint> {
    let hint = match failure {
        Failure::Handoff { detail, .. } if detail.starts_with("cannot run") => Hint::new(
            "the sendmail program cannot be run: check connection.sendmail_command and that the MTA is installed",
            "o programa sendmail não pôde ser executado: confira connection.sendmail_command e se o MTA está instalado",
        ),
        Failure::Handoff { .. } => Hint::new(
            "the local MTA refused the message: its words above, and its log, say why",
            "o MTA local recusou a mensagem: a resposta acima, e o log dele, dizem por quê",
        ),
        Failure::Timeout { .. } => Hint::new(
            "sendmail did not finish in time: check that the local MTA is running",
            "o sendmail não terminou a tempo: confira se o MTA local está em execução",
        ),
        _ => return None,
    };
    Some(hint)
}

/// rustls' words when the peer answered a TLS hello with plain SMTP text.
fn looks_like_plain_text(detail: &str) -> bool {
    ["corrupt message", "InvalidContentType", "invalid content type", "received corrupt"]
        .iter()
        .any(|s| detail.contains(s))
}
