//! Every word the console shows, in English and in Portuguese (pt-BR),
//! side by side. The labels of SPEC §8 are the ones operators of Fluig and
//! Benner already know. A text missing in one language does not compile.

use crate::i18n::Lang;

macro_rules! texts {
    ($($name:ident: $en:expr, $pt:expr;)*) => {
        /// The console's words in one language.
        pub struct Texts {
            $(pub $name: &'static str,)*
        }

        pub static EN: Texts = Texts { $($name: $en,)* };
        pub static PT_BR: Texts = Texts { $($name: $pt,)* };
    };
}

pub fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::En => &EN,
        Lang::PtBr => &PT_BR,
    }
}

texts! {
    tagline: "outbound e-mail gateway", "gateway de envio de e-mail";
    nav_global: "System Settings → Platform Parameters → E-mail", "Configurações do Sistema → Parâmetros da Plataforma → E-mail";
    nav_companies: "Companies", "Empresas";
    nav_messages: "Messages", "Mensagens";
    nav_audit: "Audit log", "Registro de auditoria";
    logout: "Log out", "Sair";
    signed_in_as: "Signed in as", "Conectado como";
    platform_admin: "platform administrator", "administrador da plataforma";
    company_admin_of: "administrator of", "administrador de";
    skip_to_content: "Skip to content", "Ir para o conteúdo";

    login_title: "Log in to carteiro", "Entrar no carteiro";
    username: "User name", "Usuário";
    password: "Password", "Senha";
    login_button: "Log in", "Entrar";
    login_wrong: "The user name or password is wrong.", "Usuário ou senha incorretos.";
    login_throttled: "Too many failed attempts for this user name. Try again in {n} seconds.", "Muitas tentativas com falha para este usuário. Tente novamente em {n} segundos.";
    logged_out: "You have logged out.", "Você saiu.";

    forbidden: "Only a platform administrator can open this page.", "Somente um administrador da plataforma pode abrir esta página.";
    not_found: "There is no such page, or it is not yours to see.", "Esta página não existe ou você não tem acesso a ela.";
    csrf_failed: "The form had expired. Reload the page and send it again.", "O formulário expirou. Recarregue a página e envie de novo.";
    unavailable: "carteiro cannot reach its database right now; nothing was changed. Try again shortly.", "O carteiro não consegue acessar o banco de dados agora; nada foi alterado. Tente novamente em instantes.";
    internal: "Something went wrong inside carteiro; the error is in its log.", "Algo deu errado no carteiro; o erro está no log.";
    error_title: "Error", "Erro";
    back_home: "Back to the start page", "Voltar ao início";

    global_title: "E-mail: global settings", "E-mail: configuração global";
    global_intro: "The platform's e-mail settings. Every company and user inherits them unless their own level enables specific e-mail sending (the connection) or sets a field of its own (sender and sending).", "A configuração de e-mail da plataforma. Todas as empresas e usuários a herdam, a menos que o próprio nível habilite o envio de e-mail específico (a conexão) ou defina um campo próprio (remetente e envio).";
    company_email_intro: "This company's e-mail settings. They prevail over the global ones, even when the global ones change later.", "A configuração de e-mail desta empresa. Ela prevalece sobre a global, mesmo quando a global mudar depois.";
    user_title: "User's SMTP data", "Dados SMTP do usuário";
    user_intro: "SMTP data in a user's record take precedence over the company's and the global ones, for the messages this user triggers. System messages never use them.", "Os dados SMTP no cadastro de um usuário têm precedência sobre os da empresa e os globais, para as mensagens que esse usuário dispara. Mensagens de sistema nunca os usam.";
    section_connection: "Connection", "Conexão";
    section_proxy: "Proxy", "Proxy";
    section_oauth: "XOAUTH2 (Google, Microsoft 365)", "XOAUTH2 (Google, Microsoft 365)";
    section_policy: "Sender and sending", "Remetente e envio";
    section_test: "Test connection", "Testar conexão";

    enabled: "Enable specific e-mail sending?", "Deseja habilitar o envio de e-mail específico?";
    enabled_help_company: "On: this company sends through the connection below, taken as a whole; nothing is mixed with the global server (not even its password). Off: it uses the global connection.", "Ligado: esta empresa envia pela conexão abaixo, como um todo; nada é misturado com o servidor global (nem a senha). Desligado: ela usa a conexão global.";
    enabled_help_user: "On: this user's messages go through the connection below, taken as a whole. Off: they use the company's connection, or the global one.", "Ligado: as mensagens deste usuário saem pela conexão abaixo, como um todo. Desligado: elas usam a conexão da empresa, ou a global.";
    inherited_connection: "Connection used when this is off", "Conexão usada quando desligado";
    no_connection: "none configured: messages cannot be sent", "nenhuma configurada: as mensagens não podem ser enviadas";
    transport: "Transport", "Transporte";
    transport_help: "SMTP sends to a mail server. sendmail hands each message to the local MTA program, pickup writes .eml files into a directory an MTA watches, capture keeps messages in carteiro for viewing (development and staging). sendmail and pickup act on this host: only a platform administrator may choose them.", "SMTP envia a um servidor de e-mail. sendmail entrega cada mensagem ao programa MTA local, pickup grava arquivos .eml num diretório que um MTA observa, capture guarda as mensagens no carteiro para consulta (desenvolvimento e homologação). sendmail e pickup agem neste servidor: só um administrador da plataforma pode escolhê-los.";
    host: "Server host", "Servidor (host)";
    host_help: "Name or IP address of the SMTP server.", "Nome ou endereço IP do servidor SMTP.";
    port: "Server port", "Porta do servidor";
    port_help: "25 when blank; usually 587 with STARTTLS and 465 with TLS-SSL.", "25 quando em branco; normalmente 587 com STARTTLS e 465 com TLS-SSL.";
    security: "Security", "Segurança";
    security_help: "STARTTLS encrypts a connection that starts in plain text; TLS-SSL encrypts from the first byte. The server's certificate is verified.", "STARTTLS criptografa uma conexão que começa em texto puro; TLS-SSL criptografa desde o primeiro byte. O certificado do servidor é verificado.";
    security_none: "None", "Não";
    auth_enabled: "Authentication", "Autenticação";
    auth_help: "Log in to the server with the user and password below.", "Fazer login no servidor com o usuário e a senha abaixo.";
    auth_mechanism: "Login mechanism", "Mecanismo de login";
    auth_mechanism_help: "Automatic uses what the server offers; XOAUTH2 logs in with the tokens of the XOAUTH2 section.", "Automático usa o que o servidor oferece; XOAUTH2 faz login com os tokens da seção XOAUTH2.";
    automatic: "Automatic", "Automático";
    smtp_user: "User", "Usuário";
    secret_help: "Leave blank to keep the stored one (while the server and user stay the same).", "Deixe em branco para manter o valor guardado (enquanto o servidor e o usuário forem os mesmos).";
    secret_stored: "One is stored.", "Há um valor guardado.";
    timeout: "SMTP timeout (seconds)", "Tempo limite SMTP (segundos)";
    timeout_help: "10 to 180 (180 when blank): how long to wait for the connection and for each reply.", "De 10 a 180 (180 quando em branco): quanto esperar pela conexão e por cada resposta.";
    tls_verify: "Verify the server's certificate", "Verificar o certificado do servidor";
    tls_verify_help: "Turn off only for a test server with a self-signed certificate.", "Desligue somente para um servidor de teste com certificado autoassinado.";
    tls_ca: "Extra certificate authority (PEM)", "Autoridade certificadora extra (PEM)";
    tls_ca_help: "For a server whose certificate your own authority issued.", "Para um servidor cujo certificado foi emitido pela sua própria autoridade.";
    max_sessions: "Sessions at once", "Sessões simultâneas";
    max_sessions_help: "Most SMTP sessions open to this server at once (4 when blank).", "Máximo de sessões SMTP abertas ao mesmo tempo com este servidor (4 quando em branco).";
    rate: "Messages per minute", "Mensagens por minuto";
    rate_help: "Most messages per minute sent to this server; blank for no limit.", "Máximo de mensagens por minuto para este servidor; em branco, sem limite.";
    sendmail_command: "sendmail command", "Comando sendmail";
    sendmail_command_help: "Program and arguments (/usr/sbin/sendmail -t -i when blank).", "Programa e argumentos (/usr/sbin/sendmail -t -i quando em branco).";
    pickup_dir: "Pickup directory", "Diretório de coleta (pickup)";
    pickup_dir_help: "Absolute path of the directory the MTA watches.", "Caminho absoluto do diretório que o MTA observa.";
    proxy_enabled: "Use proxy", "Utilizar proxy";
    proxy_enabled_help: "Reach the SMTP server through a SOCKS5 or HTTP CONNECT proxy.", "Acessar o servidor SMTP por um proxy SOCKS5 ou HTTP CONNECT.";
    proxy_kind: "Proxy type", "Tipo de proxy";
    proxy_address: "Proxy address", "Endereço do proxy";
    proxy_address_help: "Blank: the system's proxy settings (ALL_PROXY, HTTPS_PROXY, NO_PROXY).", "Em branco: as configurações de proxy do sistema (ALL_PROXY, HTTPS_PROXY, NO_PROXY).";
    proxy_port: "Proxy port", "Porta do proxy";
    proxy_user: "Proxy user", "Usuário do proxy";
    proxy_password: "Proxy password", "Senha do proxy";
    oauth_access_token: "Access token", "Token de acesso";
    oauth_access_token_help: "A fixed token; or leave it blank and give the client and the refresh token (Google) or the tenant (Microsoft 365).", "Um token fixo; ou deixe em branco e informe o cliente e o refresh token (Google) ou o tenant (Microsoft 365).";
    oauth_token_url: "Token endpoint URL", "URL do endpoint de token";
    oauth_token_url_help: "Blank: Google's, or Microsoft's when a tenant is given.", "Em branco: o do Google, ou o da Microsoft quando há um tenant.";
    oauth_client_id: "Client id", "Client id";
    oauth_client_secret: "Client secret", "Client secret";
    oauth_refresh_token: "Refresh token", "Refresh token";
    oauth_tenant: "Tenant (Microsoft 365)", "Tenant (Microsoft 365)";
    oauth_scope: "Scope", "Escopo";

    default_sender_enabled: "Default sender", "Remetente padrão";
    default_sender_enabled_help: "System messages (user creation, password recovery, connection test) come from the default sender below. When it is off, they come from the company's own e-mail address.", "Mensagens de sistema (criação de usuário, recuperação de senha, teste de conexão) saem pelo remetente padrão abaixo. Quando desligado, saem pelo e-mail da própria empresa.";
    default_sender_name: "Sender's name", "Nome do remetente";
    default_sender_address: "Sender's e-mail", "E-mail do remetente";
    default_sender_address_help: "Also the envelope sender (MAIL FROM), unless the server's login is itself an e-mail address.", "Também o remetente do envelope (MAIL FROM), a menos que o login do servidor seja um endereço de e-mail.";
    force_default_sender: "All notifications from the default sender", "Todas as notificações pelo remetente padrão";
    force_default_sender_help: "On: every message, also those a person triggers (workflow moves, documents), comes from the default sender. Off: a person's messages come from that person, or from the custom sender the platform gives.", "Ligado: toda mensagem, inclusive as que uma pessoa dispara (movimentações de fluxo, documentos), sai pelo remetente padrão. Desligado: as mensagens de uma pessoa saem em nome dela, ou do remetente personalizado que a plataforma informar.";
    bundle_enabled: "Bundle e-mails to send", "Agrupar e-mails no envio";
    bundle_enabled_help: "On: messages are collected and sent together at every interval below, over one SMTP session: fewer connections for a busy server. Off: each message is sent over its own connection.", "Ligado: as mensagens são reunidas e enviadas juntas a cada intervalo abaixo, numa única sessão SMTP: menos conexões para um servidor movimentado. Desligado: cada mensagem vai por uma conexão própria.";
    bundle_interval: "Bundle interval (milliseconds)", "Intervalo de agrupamento (milissegundos)";
    bundle_interval_help: "100 to 600000 (2000 when not set).", "De 100 a 600000 (2000 quando não definido).";
    send_as_others: "Sending on behalf of users", "Envio em nome dos usuários";
    send_as_others_help: "Some servers refuse to send as other people. Allowed: From is the user. On behalf: From is the user and Sender the default sender. Rewrite: From is the default sender with the user's name, and replies go to the user.", "Alguns servidores recusam enviar como outras pessoas. Permitido: From é o usuário. Em nome de: From é o usuário e Sender o remetente padrão. Reescrever: From é o remetente padrão com o nome do usuário, e as respostas vão para o usuário.";
    send_as_allowed: "Allowed", "Permitido";
    send_as_on_behalf: "On behalf (Sender header)", "Em nome de (cabeçalho Sender)";
    send_as_rewrite: "Rewrite From, replies to the user", "Reescrever From, respostas ao usuário";
    inherit: "Inherit", "Herdar";
    yes: "Yes", "Sim";
    no: "No", "Não";
    inherits: "inherits", "herda";
    source_global: "global", "global";
    source_company: "company", "empresa";
    source_user: "user", "usuário";
    source_default: "default", "padrão";
    not_set: "not set", "não definido";

    test_to: "Send the test e-mail to", "Enviar o e-mail de teste para";
    test_button: "Test connection", "Testar conexão";
    test_help: "Uses the values of this form, saved or not; a blank password means the stored one. The test e-mail goes out as a system message.", "Usa os valores deste formulário, salvos ou não; senha em branco significa a guardada. O e-mail de teste sai como mensagem de sistema.";
    test_ok: "The settings work: the server accepted the test e-mail.", "As configurações funcionam: o servidor aceitou o e-mail de teste.";
    test_failed: "The test failed.", "O teste falhou.";
    likely_fix: "Likely fix:", "Provável solução:";
    testing: "Testing…", "Testando…";
    save: "Save", "Salvar";
    saved: "Saved.", "Salvo.";
    not_saved: "Nothing was saved: correct the fields marked below.", "Nada foi salvo: corrija os campos indicados abaixo.";

    companies_title: "Companies", "Empresas";
    new_company: "New company", "Nova empresa";
    slug: "Identifier", "Identificador";
    slug_help: "2 to 63 characters of a-z, 0-9 and '-'; it names the company in the API and cannot change.", "De 2 a 63 caracteres entre a-z, 0-9 e '-'; identifica a empresa na API e não pode mudar.";
    company_name: "Name", "Nome";
    company_email: "Company e-mail", "E-mail da empresa";
    company_email_help: "The sender of system messages when no default sender is enabled.", "O remetente das mensagens de sistema quando nenhum remetente padrão está habilitado.";
    create: "Create", "Criar";
    no_companies: "No company yet.", "Nenhuma empresa ainda.";
    own_sending: "Specific e-mail sending", "Envio de e-mail específico";
    edit: "Edit", "Editar";
    company_exists: "A company with this identifier already exists.", "Já existe uma empresa com este identificador.";
    tab_general: "General", "Geral";
    tab_email: "E-mail", "E-mail";
    tab_users: "Users", "Usuários";
    tab_effective: "Effective settings", "Configuração efetiva";
    tab_keys: "API keys", "Chaves de API";
    tab_admins: "Administrators", "Administradores";

    users_title: "Users with SMTP data of their own", "Usuários com dados SMTP próprios";
    user_id: "User id", "Id do usuário";
    user_id_help: "The id the platform gives the person (actor.id of the messages it triggers).", "O id que a plataforma dá à pessoa (actor.id das mensagens que ela dispara).";
    open: "Open", "Abrir";
    no_users: "No user has settings of their own yet.", "Nenhum usuário tem configuração própria ainda.";

    effective_intro: "What this company's messages (and the user's, when one is given) are sent with: every value and the level it comes from.", "Com o que as mensagens desta empresa (e do usuário, quando informado) são enviadas: cada valor e o nível de onde vem.";
    field: "Field", "Campo";
    value: "Value", "Valor";
    source: "Source", "Origem";
    show: "Show", "Mostrar";

    create_key: "Create API key", "Criar chave de API";
    key_name: "Label", "Rótulo";
    key_shown_once: "Copy this key now: it is shown only once.", "Copie esta chave agora: ela é exibida uma única vez.";
    key: "Key", "Chave";
    created_at: "Created", "Criada em";
    revoked_at: "Revoked", "Revogada em";
    revoke: "Revoke", "Revogar";
    key_revoked: "The key was revoked: it stops working at once.", "A chave foi revogada: ela para de funcionar imediatamente.";
    no_keys: "No API key yet.", "Nenhuma chave de API ainda.";
    keys_intro: "Applications submit messages for this company with these keys (Authorization: Bearer ck_…).", "As aplicações enviam mensagens desta empresa com estas chaves (Authorization: Bearer ck_…).";

    dkim_intro: "Receivers check a DKIM signature against a key published in DNS. carteiro signs every message whose From address is in a key's domain, with the newest key of that domain. To rotate, add a key with a new selector, publish its record, and remove the old key once no message waits for it.", "Os destinatários conferem a assinatura DKIM com uma chave publicada no DNS. O carteiro assina toda mensagem cujo remetente (From) está no domínio de uma chave, com a chave mais nova desse domínio. Para trocar a chave, crie outra com um novo seletor, publique o registro dela e remova a antiga quando nenhuma mensagem esperar por ela.";
    no_dkim: "No DKIM key yet: messages go out unsigned.", "Nenhuma chave DKIM ainda: as mensagens saem sem assinatura.";
    dkim_selector: "Selector", "Seletor";
    dkim_selector_help: "A name for this key, such as 2026a; the record goes at SELECTOR._domainkey.DOMAIN.", "Um nome para esta chave, como 2026a; o registro fica em SELETOR._domainkey.DOMÍNIO.";
    dkim_domain: "Domain", "Domínio";
    dkim_domain_help: "The domain of the From addresses to sign, such as acme.example.", "O domínio dos remetentes (From) a assinar, como acme.example.";
    dkim_algorithm: "Algorithm", "Algoritmo";
    dkim_record: "DNS TXT record to publish", "Registro DNS TXT a publicar";
    dkim_signs: "signs", "assina";
    dkim_kept: "kept until removed", "mantida até ser removida";
    dkim_remove: "Remove", "Remover";
    dkim_new: "New key", "Nova chave";
    dkim_import: "Import a private key (PEM, optional)", "Importar uma chave privada (PEM, opcional)";
    dkim_import_help: "Blank: carteiro makes the key. The private key is kept encrypted and never shown again.", "Em branco: o carteiro cria a chave. A chave privada fica criptografada e nunca mais é exibida.";
    dkim_created: "Key created: publish its DNS record.", "Chave criada: publique o registro DNS dela.";
    dkim_removed: "Key removed.", "Chave removida.";

    admins_title: "Company administrators", "Administradores da empresa";
    admins_intro: "They log in to this console and see only this company, its users, keys and messages.", "Eles entram neste console e veem somente esta empresa, seus usuários, chaves e mensagens.";
    create_admin: "Create administrator", "Criar administrador";
    admin_created: "Administrator created.", "Administrador criado.";
    password_rule: "At least 10 characters.", "Pelo menos 10 caracteres.";
    username_taken: "This user name is taken.", "Este nome de usuário já está em uso.";
    no_admins: "No administrator for this company yet.", "Nenhum administrador para esta empresa ainda.";

    messages_title: "Messages", "Mensagens";
    company: "Company", "Empresa";
    status: "Status", "Situação";
    recipient: "Recipient", "Destinatário";
    after: "Since", "Desde";
    before: "Until", "Até";
    filter: "Filter", "Filtrar";
    any: "Any", "Todas";
    subject: "Subject", "Assunto";
    attempts: "Attempts", "Tentativas";
    no_messages: "No message matches.", "Nenhuma mensagem encontrada.";

    message_title: "Message", "Mensagem";
    kind: "Kind", "Tipo";
    actor: "Acting user", "Usuário que disparou";
    from_header: "From", "De (From)";
    sender_header: "Sender", "Sender";
    reply_to: "Reply-To", "Responder para (Reply-To)";
    envelope_from: "Envelope sender (MAIL FROM)", "Remetente do envelope (MAIL FROM)";
    recipients: "Recipients", "Destinatários";
    next_attempt: "Next attempt", "Próxima tentativa";
    send_at: "Scheduled for", "Agendada para";
    tags: "Tags", "Etiquetas";
    idempotency_key: "Idempotency key", "Chave de idempotência";
    size: "Size (bytes)", "Tamanho (bytes)";
    at: "When", "Quando";
    server: "Server", "Servidor";
    code: "Code", "Código";
    reply: "Reply", "Resposta";
    duration_ms: "Duration (ms)", "Duração (ms)";
    outcome: "Outcome", "Resultado";
    no_attempts: "No attempt yet.", "Nenhuma tentativa ainda.";
    headers: "Headers", "Cabeçalhos";
    body_purged: "The message's body is no longer kept.", "O corpo da mensagem não é mais guardado.";
    view_raw: "Download the message as built (.eml)", "Baixar a mensagem como montada (.eml)";
    cancel: "Cancel", "Cancelar";
    retry: "Retry", "Tentar novamente";
    cancelled_ok: "The message was cancelled.", "A mensagem foi cancelada.";
    retried_ok: "The message is queued again.", "A mensagem voltou para a fila.";
    too_late: "It is too late: the message's status does not allow this any more.", "Tarde demais: a situação da mensagem não permite mais isso.";

    audit_title: "Audit log", "Registro de auditoria";
    audit_intro: "Who changed what and when. Only the names of the fields are recorded, never their values.", "Quem mudou o quê e quando. Só os nomes dos campos são registrados, nunca os valores.";
    who: "Who", "Quem";
    action: "Action", "Ação";
    target: "Target", "Alvo";
    fields: "Fields", "Campos";
    no_entries: "Nothing recorded yet.", "Nada registrado ainda.";
    all_companies: "All (and global)", "Todas (e global)";
}

/// The words of a fixed name (a step, a status) in each language.
fn pick(lang: Lang, (en, pt_br): (&'static str, &'static str)) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::PtBr => pt_br,
    }
}

/// A step of Test connection or of a delivery attempt; its own name when unknown.
pub fn step(lang: Lang, name: &str) -> String {
    let words = match name {
        "settings" => ("Settings", "Configurações"),
        "sender" => ("Sender", "Remetente"),
        "dns" => ("DNS lookup", "Consulta DNS"),
        "proxy" => ("Proxy connection", "Conexão ao proxy"),
        "tunnel" => ("Tunnel through the proxy", "Túnel pelo proxy"),
        "tcp" => ("TCP connection", "Conexão TCP"),
        "tls" => ("TLS handshake", "Negociação TLS"),
        "greeting" => ("Server greeting", "Saudação do servidor"),
        "token" => ("OAuth token", "Token OAuth"),
        "auth" => ("Login (AUTH)", "Autenticação (AUTH)"),
        "mail" => ("Sender (MAIL FROM)", "Remetente (MAIL FROM)"),
        "rcpt" => ("Recipient (RCPT TO)", "Destinatário (RCPT TO)"),
        "data" | "data_end" => ("Message (DATA)", "Mensagem (DATA)"),
        "handoff" => ("Hand-off to the local transport", "Entrega ao transporte local"),
        other => return other.to_uppercase(),
    };
    pick(lang, words).to_owned()
}

/// A message's status; its own name when unknown.
pub fn status(lang: Lang, status: &str) -> String {
    let words = match status {
        "scheduled" => ("scheduled", "agendada"),
        "queued" => ("queued", "na fila"),
        "sending" => ("sending", "enviando"),
        "sent" => ("sent", "enviada"),
        "deferred" => ("deferred", "adiada"),
        "failed" => ("failed", "com falha"),
        "cancelled" => ("cancelled", "cancelada"),
        other => return other.to_owned(),
    };
    pick(lang, words).to_owned()
}

impl Texts {
    /// Where an effective value comes from.
    pub fn source(&self, source: &str) -> &'static str {
        match source {
            "global" => self.source_global,
            "company" => self.source_company,
            "user" => self.source_user,
            _ => self.source_default,
        }
    }
}
